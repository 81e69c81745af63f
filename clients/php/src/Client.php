<?php

declare(strict_types=1);

namespace Sessiond;

/**
 * A small client for sessiond's HTTP API over ext-curl: one curl handle per
 * client, so connections are kept alive; `unix:/path` addresses go through
 * CURLOPT_UNIX_SOCKET_PATH.
 *
 * Error answers throw ApiException (with the API's error code); a request that
 * cannot connect or times out throws UnavailableException naming the address.
 */
final class Client
{
    private \CurlHandle $curl;
    private string $base;
    private ?string $socket = null;
    /** @var list<string> */
    private array $auth = [];
    /** @var list<string> the headers of every request */
    private array $baseHeaders = [];

    public function __construct(
        private readonly string $address = 'http://127.0.0.1:8080',
        private readonly ?string $context = null,
        ?string $tokenFile = null,
        private readonly float $timeout = 5.0,
    ) {
        if (str_starts_with($address, 'unix:')) {
            $this->socket = substr($address, 5);
            $this->base = 'http://sessiond';
        } else {
            $this->base = rtrim(str_contains($address, '://') ? $address : "http://$address", '/');
        }
        if ($tokenFile !== null) {
            $token = @file_get_contents($tokenFile);
            if ($token === false) {
                throw new \InvalidArgumentException("cannot read the sessiond token file $tokenFile");
            }
            $this->auth = ['Authorization: Bearer ' . rtrim($token, "\n")];
        }
        $this->baseHeaders = array_merge($this->auth, ['Expect:']);
        $this->curl = curl_init();
        // What every request shares, set once: send() sets only what changes.
        $ms = (int) ceil($timeout * 1000);
        $fixed = [
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_CONNECTTIMEOUT_MS => $ms,
            CURLOPT_TIMEOUT_MS => $ms,
            CURLOPT_NOSIGNAL => true,
        ];
        if ($this->socket !== null) {
            $fixed[CURLOPT_UNIX_SOCKET_PATH] = $this->socket;
        }
        curl_setopt_array($this->curl, $fixed);
    }

    public function address(): string
    {
        return $this->address;
    }

    /**
     * One request. Returns [status, headers (lower-case names), body].
     *
     * @param list<string> $headers
     * @return array{int, array<string, string>, string}
     */
    public function request(string $method, string $path, ?string $body = null, array $headers = []): array
    {
        return $this->send($method, $path, $body, $headers, true);
    }

    /**
     * One request on the client's curl handle; the answer's head is parsed only
     * when $head (the other calls need the status and the body alone).
     *
     * The handle keeps the options the constructor set. Every option a request
     * may change is set again here, so nothing of the last request is left (a
     * body, HEAD's no-body) and no curl_reset() is needed between requests:
     * HTTPGET or POSTFIELDS sets the method, then NOBODY (which HTTPGET clears).
     *
     * @param list<string> $headers
     * @return array{int, array<string, string>, string}
     */
    private function send(string $method, string $path, ?string $body = null, array $headers = [], bool $head = false): array
    {
        $c = $this->curl;
        $opts = [
            CURLOPT_URL => $this->base . $path,
            // The head comes back in front of the body, parsed below: no PHP callback per line.
            CURLOPT_HEADER => $head,
            CURLOPT_HTTPHEADER => $headers === [] ? $this->baseHeaders : array_merge($this->baseHeaders, $headers),
        ];
        if ($body !== null) {
            $opts[CURLOPT_POSTFIELDS] = $body;
        } elseif ($method === 'POST' || $method === 'PUT' || $method === 'PATCH') {
            $opts[CURLOPT_POSTFIELDS] = '';
        } else {
            $opts[CURLOPT_HTTPGET] = true;
        }
        $opts[CURLOPT_NOBODY] = $method === 'HEAD'; // after HTTPGET, which clears it
        $opts[CURLOPT_CUSTOMREQUEST] = $method;
        curl_setopt_array($c, $opts);
        $out = curl_exec($c);
        if ($out === false) {
            $errno = curl_errno($c);
            $what = $errno === CURLE_OPERATION_TIMEDOUT ? 'did not answer in time' : 'cannot be reached';
            throw new UnavailableException(
                "sessiond at {$this->address} $what for $method $path: " . curl_error($c) . " (curl error $errno)"
            );
        }
        $status = (int) curl_getinfo($c, CURLINFO_RESPONSE_CODE);
        if (!$head) {
            return [$status, [], (string) $out];
        }
        // The last head (an interim 100 Continue has one of its own before it).
        $size = (int) curl_getinfo($c, CURLINFO_HEADER_SIZE);
        $text = substr((string) $out, 0, $size);
        $start = strrpos(rtrim($text), "\r\n\r\n");
        if ($start !== false) {
            $text = substr($text, $start + 4);
        }
        $respHeaders = [];
        foreach (explode("\r\n", $text) as $line) {
            $p = strpos($line, ':');
            if ($p !== false) {
                $respHeaders[strtolower(trim(substr($line, 0, $p)))] = trim(substr($line, $p + 1));
            }
        }
        return [$status, $respHeaders, (string) substr((string) $out, $size)];
    }

    /**
     * @param array{int, array<string, string>, string} $r
     * @param list<int> $ok
     * @return array{int, array<string, string>, string}
     */
    private function check(array $r, array $ok = [200, 201, 204]): array
    {
        [$status, , $body] = $r;
        if (in_array($status, $ok, true)) {
            return $r;
        }
        $o = json_decode($body, true);
        $code = is_array($o) ? (string) ($o['error'] ?? '') : '';
        $message = is_array($o) ? (string) ($o['message'] ?? '') : substr($body, 0, 300);
        throw new ApiException($status, $code, $message, $this->address);
    }

    private function ctx(): string
    {
        return $this->context === null ? '' : '?context=' . rawurlencode($this->context);
    }

    private static function p(string $segment): string
    {
        return rawurlencode($segment);
    }

    /**
     * POST /v1/sessions: a new session (sessiond chooses the id).
     *
     * @param array<string, mixed> $fields attributes, timeout, deadline, principal
     * @return array<string, mixed> the session JSON, with "etag"
     */
    public function create(array $fields = []): array
    {
        $body = $fields === [] ? null : json_encode($fields, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
        [, $h, $b] = $this->check($this->send('POST', '/v1/sessions' . $this->ctx(), $body,
            $body === null ? [] : ['Content-Type: application/json'], true));
        $s = json_decode($b, true, 512, JSON_THROW_ON_ERROR);
        $s['etag'] = $h['etag'] ?? null;
        return $s;
    }

    /** @return array<string, mixed> */
    public function get(string $id, bool $touch = true): array
    {
        [, $h, $b] = $this->check(
            $this->send('GET', '/v1/sessions/' . self::p($id) . ($touch ? '' : '?touch=false'), null, [], true)
        );
        $s = json_decode($b, true, 512, JSON_THROW_ON_ERROR);
        $s['etag'] = $h['etag'] ?? null;
        return $s;
    }

    /**
     * A peek: the session with its data, without touching it; null when there is none.
     *
     * @return array<string, mixed>|null
     */
    public function find(string $id): ?array
    {
        try {
            return $this->get($id, false);
        } catch (ApiException $e) {
            if ($e->isSessionNotFound()) {
                return null;
            }
            throw $e;
        }
    }

    /** A peek: whether the session is live, without touching it. */
    public function exists(string $id): bool
    {
        try {
            $this->check($this->send('GET', '/v1/sessions/' . self::p($id) . '?touch=false'));
            return true;
        } catch (ApiException $e) {
            if ($e->isSessionNotFound()) {
                return false;
            }
            throw $e;
        }
    }

    /** The raw value of one attribute, or null when the attribute is absent. */
    public function getAttribute(string $id, string $name): ?string
    {
        try {
            return $this->check($this->send('GET', '/v1/sessions/' . self::p($id) . '/attributes/' . self::p($name)))[2];
        } catch (ApiException $e) {
            if ($e->status === 404 && $e->errorCode === 'attribute_not_found') {
                return null;
            }
            throw $e;
        }
    }

    public function putAttribute(string $id, string $name, string $value, ?string $ifMatch = null): void
    {
        $this->check($this->send('PUT', '/v1/sessions/' . self::p($id) . '/attributes/' . self::p($name), $value,
            array_merge(['Content-Type: application/octet-stream'], $ifMatch ? ["If-Match: $ifMatch"] : [])));
    }

    public function deleteAttribute(string $id, string $name): void
    {
        $this->check($this->send('DELETE', '/v1/sessions/' . self::p($id) . '/attributes/' . self::p($name)));
    }

    /** @param array<string, mixed> $changes attributes, timeout, deadline, principal */
    public function patch(string $id, array $changes, ?string $ifMatch = null): void
    {
        $this->check($this->send('PATCH', '/v1/sessions/' . self::p($id),
            json_encode($changes, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES),
            array_merge(['Content-Type: application/json'], $ifMatch ? ["If-Match: $ifMatch"] : [])));
    }

    public function touch(string $id): void
    {
        $this->check($this->send('POST', '/v1/sessions/' . self::p($id) . '/touch'));
    }

    /** @return array<string, mixed> the rotated session, with its new "id" */
    public function rotate(string $id): array
    {
        [, , $b] = $this->check($this->send('POST', '/v1/sessions/' . self::p($id) . '/rotate'));
        return json_decode($b, true, 512, JSON_THROW_ON_ERROR);
    }

    /** DELETE: true when it ended a session, false when there was none. */
    public function delete(string $id): bool
    {
        try {
            $this->check($this->send('DELETE', '/v1/sessions/' . self::p($id)));
            return true;
        } catch (ApiException $e) {
            if ($e->isSessionNotFound()) {
                return false;
            }
            throw $e;
        }
    }

    /** "Log out everywhere": ends every session of the principal; returns how many. */
    public function deletePrincipalSessions(string $principal): int
    {
        [, , $b] = $this->check($this->send('DELETE', '/v1/principals/' . self::p($principal) . '/sessions'));
        return (int) (json_decode($b, true, 512, JSON_THROW_ON_ERROR)['invalidated'] ?? 0);
    }
}
