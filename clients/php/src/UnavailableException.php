<?php

declare(strict_types=1);

namespace Sessiond;

/** sessiond could not be reached (connect failure or timeout); the message names the address. */
class UnavailableException extends \RuntimeException
{
}
