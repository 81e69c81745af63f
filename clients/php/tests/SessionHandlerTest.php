<?php

declare(strict_types=1);

namespace Sessiond\Tests;

use PHPUnit\Framework\TestCase;
use Sessiond\ApiException;
use Sessiond\Client;
use Sessiond\SessionHandler;
use Sessiond\UnavailableException;

/** The handler's methods one by one against the real sessiond. */
final class SessionHandlerTest extends TestCase
{
    private static Server $server;
    /** @var list<string> */
    private array $warnings = [];

    public static function setUpBeforeClass(): void
    {
        self::$server = new Server();
    }

    public static function tearDownAfterClass(): void
    {
        self::$server->stop();
    }

    protected function setUp(): void
    {
        $this->assertSame('1', ini_get('session.use_strict_mode'), 'run PHPUnit with -d session.use_strict_mode=1');
        $this->warnings = [];
        set_error_handler(function (int $no, string $msg): bool {
            $this->warnings[] = $msg;
            return true;
        }, E_USER_WARNING | E_WARNING);
    }

    protected function tearDown(): void
    {
        restore_error_handler();
    }

    private function handler(?string $url = null): SessionHandler
    {
        return new SessionHandler($url ?? self::$server->url, timeout: 2.0);
    }

    public function testCreateSidIsSessiondsId(): void
    {
        $h = $this->handler();
        $id = $h->create_sid();
        $this->assertIsString($id);
        $this->assertTrue($h->client()->exists($id), 'the id is a live sessiond session');
    }

    public function testValidateIdIsAPeekAndTheFreshIdIsNoCollision(): void
    {
        $h = $this->handler();
        $id = $h->create_sid();
        // session_regenerate_id() asks right after create_sid(): not a collision.
        $this->assertFalse($h->validateId($id));
        // Any later question is a peek of sessiond.
        $this->assertTrue($h->validateId($id));
        $this->assertFalse($h->validateId('forged0000000000000000000000000000'));
        $s = (new Client(self::$server->url))->get($id, false);
        $this->assertTrue($s['new'], 'a peek does not touch');
    }

    public function testReadWriteDestroy(): void
    {
        $h = $this->handler();
        $this->assertTrue($h->open('', 'PHPSESSID'));
        $id = $h->create_sid();
        $this->assertSame('', $h->read($id));
        $this->assertTrue($h->write($id, 'n|i:1;'));
        $this->assertSame('n|i:1;', $h->read($id));
        $this->assertSame('n|i:1;', (new Client(self::$server->url))->getAttribute($id, 'php'));
        $this->assertTrue($h->destroy($id));
        $this->assertFalse($h->client()->exists($id));
        $this->assertTrue($h->destroy($id), 'destroying a gone session is not an error');
        $this->assertFalse($h->write($id, 'x|i:1;'), 'a write never recreates a session');
        $this->assertFalse($h->client()->exists($id));
        $this->assertSame(0, $h->gc(1440));
        $this->assertTrue($h->close());
    }

    public function testBinaryData(): void
    {
        $h = $this->handler();
        $id = $h->create_sid();
        $data = "b|s:3:\"\xff\x00\x01\";";
        $this->assertTrue($h->write($id, $data));
        $this->assertSame($data, $h->read($id));
    }

    public function testOpenRefusesWithoutStrictMode(): void
    {
        // A process of its own: session ini settings are fixed once output started.
        $code = 'require ' . var_export(__DIR__ . '/bootstrap.php', true) . ';'
            . '$h = new Sessiond\\SessionHandler(' . var_export(self::$server->url, true) . ');'
            . 'var_export($h->open("", "PHPSESSID")); echo "\\n";'
            . 'try { Sessiond\\SessionHandler::register($h); } catch (LogicException $e) { echo "refused: ", $e->getMessage(); }';
        $out = shell_exec(escapeshellarg(PHP_BINARY) . ' -d session.use_strict_mode=0 -d display_errors=stdout -r ' . escapeshellarg($code) . ' 2>&1');
        $this->assertStringContainsString('Sessiond\\SessionHandler refuses to run with session.use_strict_mode = 0', (string) $out);
        $this->assertStringContainsString("false\n", (string) $out, 'open() fails');
        $this->assertStringContainsString('refused: ', (string) $out, 'register() throws');
    }

    public function testNetworkErrorFailsEveryCallAndNamesTheAddress(): void
    {
        $h = $this->handler('http://127.0.0.1:1');
        // Kept (not "invalid", which would start an empty session under a new id)...
        $this->assertTrue($h->validateId('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'));
        $this->assertStringContainsString('127.0.0.1:1', $this->warnings[0]);
        // After a network error nothing is guessed: no new id, no empty read.
        $this->assertFalse($h->create_sid());
        $this->assertFalse($h->read('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'));
        $this->assertFalse($h->write('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'x'));
    }

    public function testClientErrorsAreTyped(): void
    {
        $c = new Client(self::$server->url);
        try {
            $c->get('nope0000000000000000');
            $this->fail('no exception');
        } catch (ApiException $e) {
            $this->assertSame(404, $e->status);
            $this->assertSame('session_not_found', $e->errorCode);
        }
        $this->expectException(UnavailableException::class);
        $this->expectExceptionMessage('127.0.0.1:1');
        (new Client('127.0.0.1:1', timeout: 1.0))->create();
    }

    public function testUnixSocket(): void
    {
        $dir = sys_get_temp_dir() . '/sessiond-php-uds-' . bin2hex(random_bytes(4));
        mkdir($dir);
        $srv = new Server(['--listen', "unix:$dir/http.sock"]);
        try {
            $this->assertSame("http://unix:$dir/http.sock", $srv->url);
            $h = new SessionHandler("unix:$dir/http.sock");
            $id = $h->create_sid();
            $this->assertTrue($h->write($id, 'u|i:1;'));
            $this->assertSame('u|i:1;', $h->read($id));
        } finally {
            $srv->stop();
            exec('rm -rf ' . escapeshellarg($dir));
        }
    }

    public function testUpdateTimestampIsATouch(): void
    {
        $h = $this->handler();
        $id = $h->create_sid();
        $this->assertTrue($h->write($id, 'n|i:1;'));
        $this->assertTrue($h->updateTimestamp($id, 'n|i:1;'));
        $s = $h->client()->get($id, false);
        $this->assertFalse($s['new'], 'a touch clears the new flag');
        $h->destroy($id);
        $this->assertFalse($h->updateTimestamp($id, 'n|i:1;'));
    }

    public function testReadAfterValidateIdTakesThePeeksDataAndTheAccessIsMadeLater(): void
    {
        $api = new Client(self::$server->url);
        $h = $this->handler();
        $id = $h->create_sid();
        $this->assertTrue($h->write($id, 'n|i:1;'));
        // The client's first return: the session is still new, so read() touches (the mark goes).
        $h = $this->handler();
        $this->assertTrue($h->validateId($id));
        $this->assertSame('n|i:1;', $h->read($id));
        $this->assertFalse($api->get($id, false)['new'], 'read() of a new session touches it');
        $this->assertTrue($h->write($id, 'n|i:2;'));
        $this->assertTrue($h->close());

        // Later requests: read() answers from the peek, and the access is made by write().
        $at = fn (): string => $api->get($id, false)['last_accessed_at'];
        $before = $at();
        usleep(20000);
        $h = $this->handler();
        $this->assertTrue($h->validateId($id));
        $this->assertSame('n|i:2;', $h->read($id));
        $this->assertSame($before, $at(), 'no request of its own: the peek brought the data');
        $this->assertTrue($h->write($id, 'n|i:3;'));
        $this->assertGreaterThan($before, $afterWrite = $at(), 'the write refreshed the last access');
        $this->assertTrue($h->close());
        $this->assertSame($afterWrite, $at(), 'nothing more at close');

        // A request that reads and writes nothing (read_and_close): close() makes the access.
        usleep(20000);
        $h = $this->handler();
        $this->assertTrue($h->validateId($id));
        $this->assertSame('n|i:3;', $h->read($id));
        $this->assertSame($afterWrite, $at());
        $this->assertTrue($h->close());
        $this->assertGreaterThan($afterWrite, $at(), 'close() touched the session it read');
        $this->assertSame([], $this->warnings);

        // The peek is for that id only, and only once.
        $other = $h->create_sid();
        $this->assertTrue($h->write($other, 'o|i:1;'));
        $this->assertTrue($h->validateId($id));
        $this->assertSame('o|i:1;', $h->read($other));
        $this->assertSame('n|i:3;', $h->read($id));
    }
}
