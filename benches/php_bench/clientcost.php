<?php
// Client-side cost of one request's session work, in one CLI process, outside php-fpm:
//
//   php benches/php_bench/clientcost.php sessiond|redis URL IDS_FILE [N]
//
// Times N rounds (default 3000) over the sessions in IDS_FILE of the calls a
// request makes under session_start() with session.use_strict_mode=1 and a
// changed session: sessiond's handler on a new Sessiond\Client (a php-fpm
// request starts with none) doing validateId, read and write, then the same on
// one kept client; for phpredis, a new connection doing EXISTS, GET and
// SETEX, the commands its handler sends. Prints "label cpu_us wall_us" per round.
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
