<?php

declare(strict_types=1);

namespace Sessiond;

/**
 * sessiond answered with an error: {"error": "<code>", "message": "..."}.
 * The code is one of docs/openapi.yaml's error codes (session_not_found,
 * precondition_failed, value_too_large, ...).
 */
class ApiException extends \RuntimeException
{
    public function __construct(
        public readonly int $status,
        public readonly string $errorCode,
        string $message,
        public readonly string $address,
    ) {
        parent::__construct("$status $errorCode: $message (sessiond at $address)", $status);
    }

    public function isSessionNotFound(): bool
    {
        return $this->status === 404 && $this->errorCode === 'session_not_found';
    }
}
