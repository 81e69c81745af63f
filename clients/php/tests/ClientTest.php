<?php

declare(strict_types=1);

namespace Sessiond\Tests;

use PHPUnit\Framework\TestCase;
use Sessiond\Client;

/** Client's transport against php -S echoing each request back (tests/www/echo.php). */
final class ClientTest extends TestCase
{
    private static WebServer $echo;

    public static function setUpBeforeClass(): void
    {
        self::$echo = new WebServer([]);
    }

    public static function tearDownAfterClass(): void
    {
        self::$echo->stop();
    }

    /** @return array<string, mixed> what echo.php saw */
    private static function seen(array $answer): array
    {
        return json_decode($answer[2], true, 512, JSON_THROW_ON_ERROR);
    }

    /**
     * One curl handle serves every request without curl_reset() in between:
     * nothing of one request (a body, HEAD's no-body) leaks into the next.
     */
    public function testEachRequestCarriesOnlyItsOwnMethodAndBody(): void
    {
        $c = new Client(self::$echo->url);
        $this->assertSame(['method' => 'PUT', 'length' => '3', 'body' => 'abc'], self::seen($c->request('PUT', '/echo.php', 'abc')));
        $this->assertSame(['method' => 'GET', 'length' => null, 'body' => ''], self::seen($c->request('GET', '/echo.php')));
        $this->assertSame(['method' => 'POST', 'length' => '0', 'body' => ''], self::seen($c->request('POST', '/echo.php')));
        [$status, $headers, $body] = $c->request('HEAD', '/echo.php');
        $this->assertSame([200, 'HEAD', ''], [$status, $headers['x-method'] ?? null, $body]);
        $this->assertSame(['method' => 'PATCH', 'length' => '2', 'body' => '{}'], self::seen($c->request('PATCH', '/echo.php', '{}')));
        $c->request('HEAD', '/echo.php');
        $this->assertSame(['method' => 'DELETE', 'length' => null, 'body' => ''], self::seen($c->request('DELETE', '/echo.php')));
        $this->assertSame(['method' => 'GET', 'length' => null, 'body' => ''], self::seen($c->request('GET', '/echo.php')));
    }
}
