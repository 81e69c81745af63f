<?php

require __DIR__ . '/_init.php';

$ok = @session_start();
if ($ok) {
    $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
}
answer($ok, ['n' => $_SESSION['n'] ?? null]);
