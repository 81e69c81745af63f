<?php

declare(strict_types=1);

namespace Sessiond\Tests;

/** An HTTP client with a cookie jar (curl), driving tests/www through php -S. */
final class Browser
{
    /** @var array<string, string> */
    public array $cookies = [];

    public function __construct(private readonly string $base)
    {
    }

    /** @return array{int, mixed, string} status, decoded JSON body (or null), raw body */
    public function get(string $path): array
    {
        $c = curl_init($this->base . $path);
        $set = [];
        curl_setopt_array($c, [
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT => 20,
            CURLOPT_HTTPHEADER => $this->cookies === [] ? [] : ['Cookie: ' . implode('; ', array_map(
                fn ($k, $v) => "$k=$v", array_keys($this->cookies), $this->cookies))],
            CURLOPT_HEADERFUNCTION => function ($_, string $line) use (&$set): int {
                if (stripos($line, 'Set-Cookie:') === 0) {
                    $set[] = trim(substr($line, 11));
                }
                return strlen($line);
            },
        ]);
        $body = curl_exec($c);
        if ($body === false) {
            throw new \RuntimeException('GET ' . $path . ': ' . curl_error($c));
        }
        foreach ($set as $cookie) {
            [$pair] = explode(';', $cookie, 2);
            [$k, $v] = array_map('trim', explode('=', $pair, 2));
            if ($v === '' || $v === 'deleted' || stripos($cookie, 'Max-Age=0') !== false) {
                unset($this->cookies[$k]);
            } else {
                $this->cookies[$k] = $v;
            }
        }
        return [(int) curl_getinfo($c, CURLINFO_RESPONSE_CODE), json_decode((string) $body, true), (string) $body];
    }
}
