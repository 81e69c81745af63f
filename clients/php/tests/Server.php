<?php

declare(strict_types=1);

namespace Sessiond\Tests;

/**
 * The real sessiond binary on an ephemeral port with a temporary data dir
 * ($SESSIOND_BIN, else the newest of the repository's target/{debug,release}/sessiond),
 * and PHP's built-in web server in front of tests/www.
 */
final class Server
{
    /** @var resource */
    private $proc;
    /** @var resource */
    private $stderr;
    public string $url = '';
    public string $dir;
    private string $log = '';

    /** @param list<string> $args */
    public function __construct(array $args = [], ?string $config = null)
    {
        $this->dir = sys_get_temp_dir() . '/sessiond-php-' . bin2hex(random_bytes(6));
        mkdir($this->dir, 0700, true);
        $cmd = [self::bin(), '--listen', '127.0.0.1:0', '--data-dir', $this->dir . '/data', '--max-procs', '2'];
        if ($config !== null) {
            file_put_contents($this->dir . '/sessiond.toml', $config);
            $cmd = array_merge($cmd, ['--config', $this->dir . '/sessiond.toml']);
        }
        $cmd = array_merge($cmd, $args);
        $this->proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['pipe', 'w']], $pipes);
        if (!is_resource($this->proc)) {
            throw new \RuntimeException('cannot start ' . implode(' ', $cmd));
        }
        $this->stderr = $pipes[2];
        $deadline = microtime(true) + 30;
        while (microtime(true) < $deadline) {
            $line = fgets($this->stderr);
            if ($line === false) {
                if (feof($this->stderr)) {
                    break;
                }
                usleep(20000);
                continue;
            }
            $this->log .= $line;
            if (preg_match('/listening on (\S+)/', $line, $m)) {
                $this->url = 'http://' . $m[1];
                break;
            }
        }
        if ($this->url === '') {
            $this->stop();
            throw new \RuntimeException("sessiond did not log 'listening on' within 30 s:\n" . $this->log);
        }
        stream_set_blocking($this->stderr, false);
        $address = str_starts_with($this->url, 'http://unix:') ? substr($this->url, 7) : $this->url;
        $client = new \Sessiond\Client($address, timeout: 1.0);
        $this->waitFor(static function () use ($client): bool {
            try {
                return $client->request('GET', '/healthz')[0] === 200;
            } catch (\Sessiond\UnavailableException) {
                return false;
            }
        }, 'sessiond /healthz');
    }

    public static function bin(): string
    {
        $env = getenv('SESSIOND_BIN');
        if ($env) {
            return $env;
        }
        $repo = dirname(__DIR__, 3);
        $found = array_filter([$repo . '/target/debug/sessiond', $repo . '/target/release/sessiond'], 'is_file');
        if ($found === []) {
            throw new \RuntimeException("no sessiond binary under $repo/target; run `bash tools/test` (or `cargo build --bin sessiond`), or set SESSIOND_BIN");
        }
        usort($found, fn ($a, $b) => filemtime($b) <=> filemtime($a));
        return $found[0];
    }

    private function waitFor(callable $ok, string $what, float $seconds = 20): void
    {
        $deadline = microtime(true) + $seconds;
        while (microtime(true) < $deadline) {
            if ($ok()) {
                return;
            }
            usleep(30000);
        }
        throw new \RuntimeException("$what not ready within {$seconds} s");
    }

    public function stop(): void
    {
        if (is_resource($this->proc)) {
            proc_terminate($this->proc, 15);
            proc_close($this->proc);
        }
        exec('rm -rf ' . escapeshellarg($this->dir));
    }

    /** Sessions live in a context (GET /v1/contexts). */
    public function live(string $context = 'default'): int
    {
        $o = json_decode((string) file_get_contents($this->url . '/v1/contexts'), true);
        foreach ($o['contexts'] as $c) {
            if ($c['name'] === $context) {
                return (int) $c['live'];
            }
        }
        throw new \RuntimeException("no context $context");
    }
}
