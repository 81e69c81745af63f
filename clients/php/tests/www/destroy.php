<?php

require __DIR__ . '/_init.php';

$ok = @session_start();
$id = session_id();
$destroyed = $ok && session_destroy();
answer($ok, ['destroyed' => $destroyed, 'was' => $id]);
