<?php
// Client-side cost of one request's session work, in one CLI process, outside php-fpm:
//
//   php benches/php_bench/clientcost.php sessiond|redis URL IDS_FILE [N]
//
// Times N rounds (default 3000) over the sessions in IDS_FILE of the calls a
// request makes under session_start() with session.use_strict_mode=1 and a
// changed session: sessiond's handler on a new Sessiond\Client (a php-fpm
// request starts with none) doing validateId, read and write, then the same on
// one kept client; then the same GET and PUT on a bare new curl handle and
// on a PHP stream (no curl), the transport's floor and what ext-curl adds to
// it; for phpredis, a new connection doing EXISTS, GET and SETEX, the commands
// its handler sends. Prints "label cpu_us wall_us" per round.
declare(strict_types=1);

foreach (['ApiException', 'UnavailableException', 'Client', 'SessionHandler'] as $c) {
    require __DIR__ . "/../../clients/php/src/$c.php";
}
[, $which, $url, $idsFile] = $argv;
$n = (int) ($argv[4] ?? 3000);
$ids = file($idsFile, FILE_IGNORE_NEW_LINES);

function measure(string $label, callable $f, array $ids, int $n): void
{
    for ($i = 0; $i < min($n, 100); $i++) {
        $f($ids[$i % count($ids)]);
    }
    $cpu = static function (): float {
        $r = getrusage();
        return ($r['ru_utime.tv_sec'] + $r['ru_stime.tv_sec']) * 1e6 + $r['ru_utime.tv_usec'] + $r['ru_stime.tv_usec'];
    };
    $t0 = hrtime(true);
    $c0 = $cpu();
    for ($i = 0; $i < $n; $i++) {
        $f($ids[$i % count($ids)]);
    }
    printf("%s %.0f %.0f\n", $label, ($cpu() - $c0) / $n, (hrtime(true) - $t0) / 1e3 / $n);
}

if ($which === 'sessiond') {
    measure('SessionHandler_on_a_new_client_(new_connection):_validateId_(peek_with_the_data),_read_(from_the_peek),_write', static function (string $id) use ($url): void {
        $h = new Sessiond\SessionHandler($url);
        $h->validateId($id) && $h->write($id, $h->read($id));
    }, $ids, $n);
    $kept = new Sessiond\SessionHandler($url);
    measure('SessionHandler_on_one_kept_client:_validateId_(peek_with_the_data),_read_(from_the_peek),_write', static function (string $id) use ($kept): void {
        $kept->validateId($id) && $kept->write($id, $kept->read($id));
    }, $ids, $n);
    // The transport's floor: the same two requests with no handler around them.
    measure('bare_ext-curl,_new_handle:_the_same_GET_(peek)_and_PUT', static function (string $id) use ($url): void {
        $c = curl_init();
        curl_setopt_array($c, [CURLOPT_RETURNTRANSFER => true, CURLOPT_NOSIGNAL => true,
            CURLOPT_URL => "$url/v1/sessions/$id?touch=false", CURLOPT_HTTPHEADER => ['Expect:']]);
        $s = json_decode((string) curl_exec($c), true, 512, JSON_THROW_ON_ERROR);
        curl_setopt_array($c, [CURLOPT_URL => "$url/v1/sessions/$id/attributes/php", CURLOPT_CUSTOMREQUEST => 'PUT',
            CURLOPT_POSTFIELDS => (string) ($s['attributes']['php'] ?? ''),
            CURLOPT_HTTPHEADER => ['Expect:', 'Content-Type: application/octet-stream']]);
        curl_exec($c);
        if (curl_getinfo($c, CURLINFO_RESPONSE_CODE) !== 204) {
            throw new RuntimeException("PUT of $id: " . curl_getinfo($c, CURLINFO_RESPONSE_CODE));
        }
    }, $ids, $n);
    // The same two requests over a PHP stream (no curl): what ext-curl itself costs.
    $hostPort = preg_replace('#^http://#', '', $url);
    $answer = static function ($s): string { // one HTTP/1.1 answer with a Content-Length: its body
        $status = (string) fgets($s);
        $len = 0;
        while (($line = fgets($s)) !== false && $line !== "\r\n") {
            if (stripos($line, 'content-length:') === 0) {
                $len = (int) substr($line, 15);
            }
        }
        if (!str_starts_with($status, 'HTTP/1.1 2')) {
            throw new RuntimeException("sessiond answered $status");
        }
        return $len > 0 ? (string) stream_get_contents($s, $len) : '';
    };
    measure('PHP_stream_(no_curl),_new_connection:_the_same_GET_(peek)_and_PUT', static function (string $id) use ($hostPort, $answer): void {
        $s = stream_socket_client("tcp://$hostPort");
        stream_set_timeout($s, 5);
        fwrite($s, "GET /v1/sessions/$id?touch=false HTTP/1.1\r\nHost: $hostPort\r\n\r\n");
        $v = (string) (json_decode($answer($s), true, 512, JSON_THROW_ON_ERROR)['attributes']['php'] ?? '');
        fwrite($s, "PUT /v1/sessions/$id/attributes/php HTTP/1.1\r\nHost: $hostPort\r\n"
            . "Content-Type: application/octet-stream\r\nContent-Length: " . strlen($v) . "\r\n\r\n$v");
        $answer($s);
        fclose($s);
    }, $ids, $n);
} else {
    [$host, $port] = explode(':', preg_replace('#^tcp://#', '', $url));
    measure('phpredis,_new_connection:_EXISTS,_GET,_SETEX_(its_handler\'s_commands)', static function (string $id) use ($host, $port): void {
        $r = new Redis();
        $r->connect($host, (int) $port);
        $k = "PHPREDIS_SESSION:$id";
        $r->exists($k) && $r->setex($k, 1440, (string) $r->get($k));
        $r->close();
    }, $ids, $n);
}
