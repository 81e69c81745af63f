<?php
// The one script of the adapter benchmark (benches/adapters.sh), the same for
// every handler: start the session, read its counter, add one, store it.
// Which handler stores it is php-fpm's pool setting (session.save_handler),
// or sessiond.php, prepended in the sessiond pool.
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
header('Content-Type: text/plain');
echo $_SESSION['n'];
