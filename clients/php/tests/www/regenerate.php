<?php

require __DIR__ . '/_init.php';

$ok = @session_start();
$old = session_id();
$regen = $ok && session_regenerate_id(true);
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
answer($ok, ['old' => $old, 'regenerated' => $regen, 'n' => $_SESSION['n']]);
