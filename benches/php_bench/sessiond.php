<?php
// auto_prepend_file of the sessiond pool: load Sessiond\SessionHandler from
// clients/php and register it (SESSIOND_URL from the pool's environment).
declare(strict_types=1);

foreach (['ApiException', 'UnavailableException', 'Client', 'SessionHandler'] as $c) {
    require __DIR__ . "/../../clients/php/src/$c.php";
}
Sessiond\SessionHandler::register();
