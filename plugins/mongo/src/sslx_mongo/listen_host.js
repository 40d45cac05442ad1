// Preloaded into Omniboard by `sslx board` (node --require): Omniboard 2.16.1 calls
// app.listen(PORT) with no address, so Node would listen on every interface, and on
// EADDRINUSE it silently retries PORT+1. This makes a server started with a port only
// listen on SSLX_BOARD_HOST, and refuses any port but SSLX_BOARD_PORT (exit 98) so the
// board is where sslx says it is.
'use strict';
const net = require('net');

const host = process.env.SSLX_BOARD_HOST;
const port = process.env.SSLX_BOARD_PORT;
const listen = net.Server.prototype.listen;

function isPort(value) {
  return typeof value === 'number' || (typeof value === 'string' && /^\d+$/.test(value));
}

net.Server.prototype.listen = function (...args) {
  if (!host) {
    return listen.apply(this, args);
  }
  if (isPort(args[0])) {
    if (port && String(args[0]) !== port) {
      console.error(`sslx board: port ${port} is taken (Omniboard tried ${args[0]} instead); exiting.`);
      process.exit(98);
    }
    if (typeof args[1] !== 'string') {
      args.splice(1, 0, host);
    }
  } else if (args[0] && typeof args[0] === 'object' && isPort(args[0].port) && args[0].host === undefined) {
    args[0] = { ...args[0], host };
  }
  return listen.apply(this, args);
};
