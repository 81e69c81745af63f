<?php

declare(strict_types=1);

namespace Sessiond\Tests;

/** `php -S 127.0.0.1:PORT -t tests/www` with the handler pointed at a sessiond. */
final class WebServer
{
    /** @var resource */
    private $proc;
    public string $url;
    public string $logFile;

    /** @param array<string, string> $env */
    public function __construct(array $env)
    {
        $sock = stream_socket_server('tcp://127.0.0.1:0');
        $port = (int) substr(strrchr(stream_socket_get_name($sock, false), ':'), 1);
        fclose($sock);
        $this->url = "http://127.0.0.1:$port";
        $this->logFile = tempnam(sys_get_temp_dir(), 'php-s-');
        $cmd = [PHP_BINARY, '-d', 'session.use_strict_mode=1', '-d', 'display_errors=stderr', '-d', 'log_errors=0',
            '-S', "127.0.0.1:$port", '-t', __DIR__ . '/www'];
        $this->proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', $this->logFile, 'a'], 2 => ['file', $this->logFile, 'a']],
            $pipes, null, array_merge(getenv(), $env));
        $deadline = microtime(true) + 20;
        while (microtime(true) < $deadline) {
            $c = @fsockopen('127.0.0.1', $port, $errno, $errstr, 0.2);
            if ($c) {
                fclose($c);
                return;
            }
            usleep(30000);
        }
        throw new \RuntimeException("php -S did not listen on $port:\n" . file_get_contents($this->logFile));
    }

    public function stop(): void
    {
        if (is_resource($this->proc)) {
            proc_terminate($this->proc, 15);
            proc_close($this->proc);
        }
        @unlink($this->logFile);
    }
}
