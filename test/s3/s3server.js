// A local S3 server for tests: s3rver (npm) on loopback, with one bucket, that writes one line
// per request ("METHOD /path?query") to a log, so tests can count the LIST and HEAD requests a
// FUSE backing such as s3fs sends to the store.
//
// usage: node s3server.js DATA_DIR PORT BUCKET REQUEST_LOG
// Prints "listening ADDRESS:PORT" once it serves; exits on SIGTERM. ADDRESS is 127.0.0.1, or
// $S3_ADDRESS (a test that runs the server in a network namespace of its own).
'use strict';
const fs = require('fs');
const path = require('path');

const [dir, port, bucket, reqlog] = process.argv.slice(2);
if (!dir || !port || !bucket || !reqlog) {
	console.error('usage: node s3server.js DATA_DIR PORT BUCKET REQUEST_LOG');
	process.exit(2);
}
const modroot = process.env.MOWS_NPM_DIR || '/var/cache/mows-npm';
let S3rver;
try {
	S3rver = require(path.join(modroot, 'node_modules', 's3rver'));
} catch (e) {
	console.error(`s3server.js: s3rver is not installed under ${modroot}; run make deps`);
	process.exit(2);
}

const address = process.env.S3_ADDRESS || '127.0.0.1';
const log = fs.openSync(reqlog, 'a');
const server = new S3rver({
	address,
	port: Number(port),
	directory: dir,
	silent: true,
	configureBuckets: [{ name: bucket }],
});
server.run().then((addr) => {
	server.httpServer.prependListener('request', (req) => {
		fs.writeSync(log, `${req.method} ${req.url}\n`);
	});
	console.log(`listening ${addr.address}:${addr.port}`);
}, (err) => {
	console.error(`s3server.js: cannot listen on ${address}:${port}: ${err.message}`);
	process.exit(1);
});
process.on('SIGTERM', () => server.close().finally(() => process.exit(0)));
