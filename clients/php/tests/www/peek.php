<?php

require __DIR__ . '/_init.php';

$ok = @session_start();
answer($ok, ['n' => $_SESSION['n'] ?? null]);
