<?php

declare(strict_types=1);

namespace Sessiond;

/**
 * PHP's session store in sessiond.
 *
 *     $h = new Sessiond\SessionHandler(getenv('SESSIOND_URL') ?: 'http://127.0.0.1:8080');
 *     session_set_save_handler($h, true);
 *     session_start();
 *
 * Mapping: create_sid() is sessiond's POST (the server chooses the id); read and
 * write carry PHP's serialised session as one attribute ("php" by default);
 * destroy is DELETE; updateTimestamp (session.lazy_write) is a touch;
 * validateId is a peek; gc has nothing to do, sessiond reaps.
 *
 * Two round trips per request, not three: strict mode makes PHP call
 * validateId() and then read() on the id a client sent. validateId()'s peek
 * fetches the session with its data, and read() of that id returns what the
 * peek brought instead of asking again. The access that read() stands for (the
 * rolling expiry) is then made by the request's write() or updateTimestamp(),
 * which refresh the last access in sessiond anyway, or by close() with a touch
 * when the request wrote nothing (read_and_close, session_abort()). A session
 * still marked new (its client's first return) is read the usual way, with a
 * touching GET, so that sessiond clears the mark.
 *
 * What PHP gets wrong with custom handlers, and this one does not:
 *  - It refuses to run with session.use_strict_mode = 0 (open() fails with a
 *    warning saying so): without strict mode PHP adopts any id a client sends.
 *  - Strict session_regenerate_id() calls validateId() on the id create_sid()
 *    just made; that id is not reported as a collision, so PHP does not create
 *    and orphan more sessions.
 *  - A network error is a warning and a failed session_start(), never an empty
 *    session that would then overwrite the real one: once sessiond could not be
 *    reached, every later call of the request fails too. (A visitor without a
 *    session id while sessiond is down: create_sid() fails, and PHP makes
 *    session_start() throw "Session id must be a string" after the warning.)
 */
final class SessionHandler implements \SessionHandlerInterface, \SessionIdInterface, \SessionUpdateTimestampHandlerInterface
{
    private Client $client;
    /** @var array<string, true> ids create_sid() made in this request, not yet validated */
    private array $created = [];
    /** Set by the first network error: the rest of the request fails instead of guessing. */
    private ?string $unavailable = null;
    /** @var array{string, string}|null [id, data] of validateId()'s last peek, for read() */
    private ?array $peeked = null;
    /** @var array<string, true> ids read from a peek whose access is not yet made in sessiond */
    private array $owed = [];

    public function __construct(
        string $address = 'http://127.0.0.1:8080',
        ?string $context = null,
        ?string $tokenFile = null,
        float $timeout = 5.0,
        private readonly string $attribute = 'php',
    ) {
        $this->client = new Client($address, $context, $tokenFile, $timeout);
    }

    /** Builds a handler from SESSIOND_URL, SESSIOND_CONTEXT and SESSIOND_TOKEN_FILE and registers it. */
    public static function register(?self $handler = null): self
    {
        $handler ??= new self(
            getenv('SESSIOND_URL') ?: 'http://127.0.0.1:8080',
            getenv('SESSIOND_CONTEXT') ?: null,
            getenv('SESSIOND_TOKEN_FILE') ?: null,
        );
        if (!self::strict()) {
            throw new \LogicException(self::STRICT_MESSAGE);
        }
        session_set_save_handler($handler, true);
        return $handler;
    }

    public function client(): Client
    {
        return $this->client;
    }

    private const STRICT_MESSAGE = 'Sessiond\SessionHandler refuses to run with session.use_strict_mode = 0: '
        . 'PHP would adopt any session id a client sends (session fixation). Set session.use_strict_mode = 1.';

    private static function strict(): bool
    {
        return filter_var(ini_get('session.use_strict_mode'), FILTER_VALIDATE_BOOLEAN);
    }

    private function warn(string $what, \Throwable $e): void
    {
        trigger_error("Sessiond\\SessionHandler: $what: " . $e->getMessage(), E_USER_WARNING);
    }

    /** A network error: warn once, and fail every later call of this request. */
    private function down(string $what, UnavailableException $e): void
    {
        $this->unavailable ??= $e->getMessage();
        $this->warn($what, $e);
    }

    private function refusing(string $what): bool
    {
        if ($this->unavailable === null) {
            return false;
        }
        trigger_error("Sessiond\\SessionHandler: $what refused: sessiond was unreachable earlier in this request ("
            . $this->unavailable . ')', E_USER_WARNING);
        return true;
    }

    public function open(string $path, string $name): bool
    {
        if (!self::strict()) {
            trigger_error(self::STRICT_MESSAGE, E_USER_WARNING);
            return false;
        }
        return true;
    }

    public function close(): bool
    {
        $this->peeked = null;
        // A session read from the peek and then neither written nor touched: the access now.
        $owed = array_keys($this->owed);
        $this->owed = [];
        foreach ($owed as $id) {
            $this->updateTimestamp((string) $id, '');
        }
        return true;
    }

    public function create_sid(): string|false
    {
        if ($this->refusing('create_sid')) {
            return false;
        }
        try {
            $id = (string) $this->client->create()['id'];
        } catch (UnavailableException $e) {
            $this->down('create_sid', $e);
            return false;
        } catch (ApiException $e) {
            $this->warn('create_sid', $e);
            return false;
        }
        $this->created[$id] = true;
        return $id;
    }

    /**
     * Whether the id names a live session. PHP calls it in strict mode on an id a
     * client sent (true: adopt it) and, from session_regenerate_id(), on the id
     * create_sid() just made (true would mean a collision, and PHP would create
     * another): that id is fresh from sessiond, so it is not a collision.
     */
    public function validateId(string $id): bool
    {
        if (isset($this->created[$id])) {
            unset($this->created[$id]);
            return false;
        }
        if ($this->unavailable !== null) {
            return true; // see below: read() fails next
        }
        $this->peeked = null;
        try {
            $s = $this->client->find($id);
        } catch (UnavailableException $e) {
            // "Not valid" would make PHP mint another id and start an empty session
            // under it. Keeping the id is safe: read() now fails, and so does
            // session_start(), and the client's cookie is left alone.
            $this->down('validateId', $e);
            return true;
        } catch (ApiException $e) {
            $this->warn('validateId', $e);
            return false;
        }
        if ($s === null) {
            return false;
        }
        if (empty($s['new'])) {
            // read() of this id takes the data from here (a new session is read with a
            // touch instead, which clears its "new" mark).
            $this->peeked = [$id, self::value($s['attributes'][$this->attribute] ?? '')];
        }
        return true;
    }

    /** An attribute value from session JSON: text, or {"base64": ...} for other bytes. */
    private static function value(mixed $v): string
    {
        if (is_array($v)) {
            $b = base64_decode((string) ($v['base64'] ?? ''), true);
            return $b === false ? '' : $b;
        }
        return (string) $v;
    }

    public function read(string $id): string|false
    {
        if ($this->refusing('read')) {
            return false;
        }
        $peeked = $this->peeked;
        $this->peeked = null;
        if ($peeked !== null && $peeked[0] === $id) {
            $this->owed[$id] = true;
            return $peeked[1];
        }
        try {
            return $this->client->getAttribute($id, $this->attribute) ?? '';
        } catch (UnavailableException $e) {
            $this->down('read', $e);
            return false;
        } catch (ApiException $e) {
            if ($e->isSessionNotFound()) {
                // Ended between validateId and read: empty, and write() will not recreate it.
                return '';
            }
            $this->warn('read', $e);
            return false;
        }
    }

    public function write(string $id, string $data): bool
    {
        unset($this->owed[$id]); // a write refreshes the last access too
        if ($this->refusing('write')) {
            return false;
        }
        try {
            $this->client->putAttribute($id, $this->attribute, $data);
            return true;
        } catch (UnavailableException $e) {
            $this->down('write', $e);
            return false;
        } catch (ApiException $e) {
            $this->warn('write', $e);
            return false;
        }
    }

    public function updateTimestamp(string $id, string $data): bool
    {
        unset($this->owed[$id]);
        if ($this->refusing('updateTimestamp')) {
            return false;
        }
        try {
            $this->client->touch($id);
            return true;
        } catch (UnavailableException $e) {
            $this->down('updateTimestamp', $e);
            return false;
        } catch (ApiException $e) {
            $this->warn('updateTimestamp', $e);
            return false;
        }
    }

    public function destroy(string $id): bool
    {
        unset($this->owed[$id]);
        if ($this->peeked !== null && $this->peeked[0] === $id) {
            $this->peeked = null;
        }
        if ($this->refusing('destroy')) {
            return false;
        }
        try {
            $this->client->delete($id);
            return true;
        } catch (UnavailableException $e) {
            $this->down('destroy', $e);
            return false;
        } catch (ApiException $e) {
            $this->warn('destroy', $e);
            return false;
        }
    }

    public function gc(int $max_lifetime): int|false
    {
        return 0; // sessiond's reaper ends expired sessions
    }
}
