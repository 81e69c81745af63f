<?php

declare(strict_types=1);

namespace Sessiond\Tests;

use PHPUnit\Framework\TestCase;
use Sessiond\Client;

/**
 * The issue's flows through PHP's built-in web server (php -S, tests/www),
 * driven by an HTTP client with a cookie jar (Browser).
 */
final class FlowTest extends TestCase
{
    private static Server $sessiond;
    private static WebServer $web;
    private static Client $api;

    public static function setUpBeforeClass(): void
    {
        // A "short" context whose sessions expire after 1 s of idleness.
        self::$sessiond = new Server([], "[[contexts]]\nname = \"short\"\ntimeout = 1\nreap_interval = 1\n");
        self::$web = new WebServer(['SESSIOND_URL' => self::$sessiond->url]);
        self::$api = new Client(self::$sessiond->url);
    }

    public static function tearDownAfterClass(): void
    {
        self::$web->stop();
        self::$sessiond->stop();
    }

    private function browser(): Browser
    {
        return new Browser(self::$web->url);
    }

    public function testNewVisitorGetsASessiondIdAndDataPersists(): void
    {
        $b = $this->browser();
        [$status, $r] = $b->get('/count.php');
        $this->assertSame(200, $status);
        $this->assertTrue($r['started'], implode("\n", $r['warnings']));
        $id = $b->cookies['PHPSESSID'];
        $this->assertSame($id, $r['id']);
        $this->assertTrue(self::$api->exists($id), 'the cookie carries a sessiond id');
        $this->assertSame(2, $b->get('/count.php')[1]['n']);
        $this->assertSame(3, $b->get('/count.php')[1]['n']);
        $this->assertSame('n|i:3;', self::$api->getAttribute($id, 'php'));
    }

    public function testRegenerateLeavesTheOldIdDeadAndExactlyOneLiveSession(): void
    {
        $b = $this->browser();
        $b->get('/count.php');
        $old = $b->cookies['PHPSESSID'];
        $before = self::$sessiond->live();
        [, $r] = $b->get('/regenerate.php');
        $this->assertTrue($r['regenerated'], implode("\n", $r['warnings']));
        $new = $b->cookies['PHPSESSID'];
        $this->assertNotSame($old, $new);
        $this->assertSame($old, $r['old']);
        $this->assertFalse(self::$api->exists($old), 'the old id is dead');
        $this->assertTrue(self::$api->exists($new));
        $this->assertSame($before, self::$sessiond->live(), 'one session ended, one began: none orphaned');
        $this->assertSame(3, $b->get('/count.php')[1]['n'], 'the data moved to the new id');
    }

    public function testDestroyEndsItInSessiond(): void
    {
        $b = $this->browser();
        $b->get('/count.php');
        $id = $b->cookies['PHPSESSID'];
        [, $r] = $b->get('/destroy.php');
        $this->assertTrue($r['destroyed']);
        $this->assertFalse(self::$api->exists($id));
    }

    public function testForgedIdIsNeverAdopted(): void
    {
        $b = $this->browser();
        $forged = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
        $b->cookies['PHPSESSID'] = $forged;
        $before = self::$sessiond->live();
        [, $r] = $b->get('/count.php');
        $this->assertTrue($r['started']);
        $this->assertNotSame($forged, $r['id']);
        $this->assertSame($r['id'], $b->cookies['PHPSESSID']);
        $this->assertSame(1, $r['n'], 'a fresh session, not the forged one');
        $this->assertFalse(self::$api->exists($forged));
        $this->assertSame($before + 1, self::$sessiond->live(), 'exactly one session made');
    }

    public function testExpiredIdIsNeverAdopted(): void
    {
        $web = new WebServer(['SESSIOND_URL' => self::$sessiond->url, 'SESSIOND_CONTEXT' => 'short']);
        try {
            $b = new Browser($web->url);
            $b->get('/count.php');
            $old = $b->cookies['PHPSESSID'];
            $this->assertSame(2, $b->get('/count.php')[1]['n']);
            sleep(3); // the context's timeout is 1 s
            [, $r] = $b->get('/count.php');
            $this->assertNotSame($old, $r['id']);
            $this->assertSame(1, $r['n']);
            $this->assertFalse(self::$api->exists($old));
        } finally {
            $web->stop();
        }
    }

    public function testLazyWriteTouchesInsteadOfWriting(): void
    {
        $b = $this->browser();
        $b->get('/count.php');
        $id = $b->cookies['PHPSESSID'];
        $s1 = self::$api->get($id, false);
        $this->assertNotNull($s1['etag'], 'sessiond sends ETag (issue 16)');
        usleep(20000);
        [, $r] = $b->get('/peek.php?lazy=1');
        $this->assertSame([], $r['warnings']);
        $this->assertSame(1, $r['n']);
        $s2 = self::$api->get($id, false);
        $this->assertSame($s1['etag'], $s2['etag'], 'unchanged data: no write');
        $this->assertGreaterThan($s1['last_accessed_at'], $s2['last_accessed_at'], 'but the session was touched');
        // And a change is still written with lazy_write on.
        $this->assertSame(2, $b->get('/count.php?lazy=1')[1]['n']);
        $this->assertNotSame($s1['etag'], self::$api->get($id, false)['etag']);
    }

    public function testStrictModeRefusal(): void
    {
        $b = $this->browser();
        $before = self::$sessiond->live();
        [, $r] = $b->get('/count.php?nonstrict=1');
        $this->assertFalse($r['started']);
        $this->assertStringContainsString('refuses to run with session.use_strict_mode = 0', implode("\n", $r['warnings']));
        $this->assertArrayNotHasKey('PHPSESSID', $b->cookies);
        $this->assertSame($before, self::$sessiond->live(), 'no session made');
    }

    public function testNetworkErrorFailsSessionStartInsteadOfAnEmptySession(): void
    {
        $b = $this->browser();
        $b->get('/count.php');
        $b->get('/count.php');
        $id = $b->cookies['PHPSESSID'];
        [, $r] = $b->get('/count.php?dead=1');
        $this->assertFalse($r['started'], 'session_start() fails');
        $this->assertStringContainsString('127.0.0.1:1', implode("\n", $r['warnings']));
        $this->assertSame($id, $b->cookies['PHPSESSID'], 'the cookie is not replaced');
        $this->assertSame('n|i:2;', self::$api->getAttribute($id, 'php'), 'the real session is intact');
        $this->assertSame(3, $b->get('/count.php')[1]['n']);
    }
}
