<?php

declare(strict_types=1);

require __DIR__ . '/../bootstrap.php';

header('Content-Type: application/json');
if (isset($_GET['lazy'])) {
    ini_set('session.lazy_write', '1');
}
if (isset($_GET['nonstrict'])) {
    ini_set('session.use_strict_mode', '0');
}
$url = isset($_GET['dead']) ? 'http://127.0.0.1:1' : (getenv('SESSIOND_URL') ?: 'http://127.0.0.1:8080');
$handler = new Sessiond\SessionHandler($url, getenv('SESSIOND_CONTEXT') ?: null);
session_set_save_handler($handler, true);

$warnings = [];
set_error_handler(static function (int $no, string $msg) use (&$warnings): bool {
    $warnings[] = $msg;
    return true;
});

/** @param array<string, mixed> $extra */
function answer(bool $started, array $extra = []): void
{
    global $warnings;
    echo json_encode(['started' => $started, 'id' => session_id(), 'warnings' => $warnings] + $extra);
}
