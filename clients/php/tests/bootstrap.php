<?php

declare(strict_types=1);

// PSR-4 as composer.json declares it, without Composer: the suite needs no download.
spl_autoload_register(static function (string $class): void {
    foreach (['Sessiond\\Tests\\' => __DIR__ . '/', 'Sessiond\\' => __DIR__ . '/../src/'] as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }
            return;
        }
    }
});
