// A reference Socket.IO v5 / Engine.IO v4 server: the official `socket.io` package configured like
// the socket.io-protocol conformance app. The e2e self-check (tests/e2e/test_harness_selfcheck.py)
// runs the client harnesses against it, which proves the harnesses independently of our server.
//
//   node tests/js/server_fixture.mjs [PORT] [HOST]     (PORT 0 or absent: any free port)
//
// Prints one JSON line once it listens: {"t":"listening","host":"127.0.0.1","port":43127}.
// Exits when its standard input closes (so it never outlives the test that started it), or on
// SIGTERM / SIGINT.
//
// Behaviour, on the namespaces "/" and "/custom" (any other namespace: CONNECT_ERROR
// "Invalid namespace", which is the socket.io server's own answer):
//   on connection        emit "auth" with socket.handshake.auth
//   "message" (...args)  emit "message-back" with the same args (binary included)
//   "message-with-ack"   acknowledge with the same args
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number.parseInt(process.argv[2] ?? "0", 10) || 0;
const host = process.argv[3] ?? "127.0.0.1";

const httpServer = createServer();
const io = new Server(httpServer, {
  pingInterval: 300,
  pingTimeout: 200,
  maxHttpBufferSize: 1e6, // Engine.IO's maxPayload
  cors: { origin: "*" },
});

function setup(namespace) {
  namespace.on("connection", (socket) => {
    socket.emit("auth", socket.handshake.auth);
    socket.on("message", (...args) => socket.emit("message-back", ...args));
    socket.on("message-with-ack", (...args) => {
      const ack = args.pop();
      if (typeof ack === "function") ack(...args);
    });
  });
}
setup(io.of("/"));
setup(io.of("/custom"));

function stop() {
  io.close();
  httpServer.closeAllConnections?.();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();

httpServer.listen(port, host, () => {
  const address = httpServer.address();
  process.stdout.write(
    `${JSON.stringify({ t: "listening", host: address.address, port: address.port })}\n`,
  );
});
