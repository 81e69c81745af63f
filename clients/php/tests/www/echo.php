<?php

// What a request carried, for ClientTest: its method, whether it declared a body, and the body.
declare(strict_types=1);

header('Content-Type: application/json');
header('X-Method: ' . $_SERVER['REQUEST_METHOD']);
echo json_encode([
    'method' => $_SERVER['REQUEST_METHOD'],
    'length' => $_SERVER['CONTENT_LENGTH'] ?? null,
    'body' => file_get_contents('php://input'),
]);
