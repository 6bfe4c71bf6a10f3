// Scenario driver for the real, unmodified npm `socket.io-client` (the one front-ends ship).
//
//   node tests/js/client.mjs '<json spec>'
//
// Spec (JSON object):
//   url       "http://127.0.0.1:PORT/crm" (the path part is the Socket.IO namespace)
//   options   passed as is to io(url, options): transports, auth {token}, path, reconnection,
//             reconnectionDelay, forceNew, autoConnect, ...
//   timeout   ms for the whole scenario (default 10000); past it: an "error" line and exit 1
//   acks      {"event name": [args...]}: when the server emits that event with an ack, answer
//             with these args (without an entry, such acks are left unanswered)
//   steps     run in order; the scenario ends after the last one:
//     {"wait": {"event": NAME, "count": N}}   until N (default 1) NAME events arrived in total
//     {"wait": {"connect": true | N}}         until N (true: 1) "connect"s happened in total
//     {"wait": {"disconnect": true | N}}      likewise for "disconnect"
//     {"wait": {"connect_error": true | N}}   likewise for "connect_error"
//     {"wait": {"upgrade": true | N}}         likewise for Engine.IO transport upgrades
//     {"emit": [NAME, ...args], "ack": BOOL}  emit; with ack, wait for the server's ack
//     {"sleep": MS}
//     {"disconnect": true}                    socket.disconnect()
//     {"connect": true}                       socket.connect() (again, after a disconnect)
//     {"until_stdin": true}                   print {"t":"waiting_stdin"} and wait for one line
//                                             on stdin (so a test can act meanwhile)
//     {"print_state": true}                   print {"t":"state", ...}
//   A wait for an event or a connect fails at once (exit 1) when the socket is no longer active
//   (it will not reconnect: e.g. a CONNECT_ERROR from the server, or a server-side disconnect).
//
// Binary: an argument {"$bytes": [1, 2, 3]} (anywhere in the args) is sent as a Buffer, and
// every received binary value (Buffer, ArrayBuffer, typed array) is printed the same way.
//
// Output: one JSON object per line on stdout, in the order things happened:
//   {"t":"connect","id":ID,"recovered":BOOL,"transport":"polling"|"websocket"}
//   {"t":"connect_error","message":STR,"data":ANY}      (data: the server's error data or null)
//   {"t":"disconnect","reason":STR}                      ("io server disconnect", ...)
//   {"t":"event","name":STR,"args":[...],"ack":BOOL}     (every incoming event, via onAny)
//   {"t":"ack","id":STEP_INDEX,"args":[...]}             (the ack of an emit step)
//   {"t":"upgrade","transport":"websocket"}              (Engine.IO transport upgrade)
//   {"t":"upgrade_error","message":STR}
//   {"t":"reconnect_attempt","attempt":N} {"t":"reconnect","attempt":N}
//   {"t":"reconnect_error","message":STR} {"t":"reconnect_failed"}
//   {"t":"waiting_stdin","step":I} {"t":"stdin","line":STR}
//   {"t":"state","id":ID|null,"connected":BOOL,"active":BOOL,"recovered":BOOL,"transport":STR|null}
//   {"t":"done"}                                         (then exit 0; a still connected socket
//                                                         is disconnected first, which prints
//                                                         its "disconnect" line)
//   {"t":"error","message":STR}                          (then exit 1)
// Debug logs of the client itself: DEBUG='socket.io-client:*,engine.io-client:*' (on stderr).
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

let finished = false; // after the final line ("done" or "error") nothing more is printed

function print(line) {
  if (!finished) process.stdout.write(`${JSON.stringify(line)}\n`);
}

function finish(line, code) {
  if (finished) return;
  print(line);
  finished = true;
  // The callback runs once everything written before is flushed.
  process.stdout.write("", () => process.exit(code));
}

function fail(message) {
  finish({ t: "error", message: String(message) }, 1);
}

function toJSONable(value) {
  if (value === undefined) return null;
  if (typeof value === "function") return { $function: true };
  if (value instanceof ArrayBuffer) return { $bytes: [...new Uint8Array(value)] };
  if (ArrayBuffer.isView(value)) {
    return { $bytes: [...new Uint8Array(value.buffer, value.byteOffset, value.byteLength)] };
  }
  if (Array.isArray(value)) return value.map(toJSONable);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJSONable(v)]));
  }
  return value;
}

function fromJSONable(value) {
  if (Array.isArray(value)) return value.map(fromJSONable);
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$bytes") return Buffer.from(value.$bytes);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromJSONable(v)]));
  }
  return value;
}

process.on("uncaughtException", (err) => fail(`uncaught: ${err?.stack ?? err}`));
process.on("unhandledRejection", (err) => fail(`unhandled rejection: ${err?.stack ?? err}`));

let spec;
try {
  spec = JSON.parse(process.argv[2] ?? "");
} catch (err) {
  print({ t: "error", message: `usage: node client.mjs '<json spec>' (${err.message})` });
  process.exit(2);
}
const steps = spec.steps ?? [];
let current = -1; // index of the running step, for error messages

const timer = setTimeout(() => {
  const step = steps[current];
  fail(`timeout after ${spec.timeout ?? 10000} ms in step ${current}: ${JSON.stringify(step)}`);
}, spec.timeout ?? 10000);

// --- what happened so far, and waiting for it -------------------------------------------------
const counts = { connect: 0, disconnect: 0, connect_error: 0, upgrade: 0 };
const eventCounts = new Map();
let lastConnectError = null;
const waiters = new Set();

function notify() {
  for (const waiter of [...waiters]) waiter();
}

// Resolves once check() is truthy; rejects if check() throws. Re-checked after each happening.
function until(check) {
  return new Promise((resolve, reject) => {
    const waiter = () => {
      let ok;
      try {
        ok = check();
      } catch (err) {
        waiters.delete(waiter);
        reject(err);
        return;
      }
      if (ok) {
        waiters.delete(waiter);
        resolve();
      }
    };
    waiters.add(waiter);
    waiter();
  });
}

// --- stdin, read only when a step needs it ----------------------------------------------------
const stdinLines = [];
let stdinClosed = false;
if (steps.some((step) => step.until_stdin)) {
  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    stdinLines.push(line);
    notify();
  });
  rl.on("close", () => {
    stdinClosed = true;
    notify();
  });
}

// --- the socket -------------------------------------------------------------------------------
const socket = io(spec.url, spec.options ?? {});
const transportName = () => socket.io.engine?.transport?.name ?? null;

socket.on("connect", () => {
  counts.connect += 1;
  print({
    t: "connect",
    id: socket.id,
    recovered: Boolean(socket.recovered),
    transport: transportName(),
  });
  notify();
});
socket.on("connect_error", (err) => {
  counts.connect_error += 1;
  lastConnectError = err;
  print({ t: "connect_error", message: err?.message ?? String(err), data: toJSONable(err?.data) });
  notify();
});
socket.on("disconnect", (reason) => {
  counts.disconnect += 1;
  print({ t: "disconnect", reason });
  notify();
});
socket.onAny((name, ...args) => {
  let ack = null;
  if (typeof args.at(-1) === "function") ack = args.pop();
  eventCounts.set(name, (eventCounts.get(name) ?? 0) + 1);
  print({ t: "event", name, args: toJSONable(args), ack: ack !== null });
  const reply = spec.acks?.[name];
  if (ack !== null && reply !== undefined) ack(...fromJSONable(reply));
  notify();
});

const seenEngines = new WeakSet();
function watchEngine() {
  const engine = socket.io.engine;
  if (!engine || seenEngines.has(engine)) return;
  seenEngines.add(engine);
  engine.on("upgrade", (transport) => {
    counts.upgrade += 1;
    print({ t: "upgrade", transport: transport.name });
    notify();
  });
  engine.on("upgradeError", (err) => print({ t: "upgrade_error", message: err?.message }));
}
watchEngine();
socket.io.on("open", watchEngine);
socket.io.on("reconnect_attempt", (attempt) => print({ t: "reconnect_attempt", attempt }));
socket.io.on("reconnect", (attempt) => print({ t: "reconnect", attempt }));
socket.io.on("reconnect_error", (err) => print({ t: "reconnect_error", message: err?.message }));
socket.io.on("reconnect_failed", () => print({ t: "reconnect_failed" }));

function assertAlive(what) {
  if (!socket.active && !socket.connected) {
    const why = lastConnectError ? `: connect_error ${lastConnectError.message}` : "";
    throw new Error(`waiting for ${what}, but the socket is inactive and will not reconnect${why}`);
  }
}

const atLeast = (value) => (value === true ? 1 : Number(value));

async function run(step, index) {
  if (step.wait) {
    const wait = step.wait;
    if (wait.event !== undefined) {
      const n = wait.count ?? 1;
      await until(() => {
        if ((eventCounts.get(wait.event) ?? 0) >= n) return true;
        assertAlive(`${n} "${wait.event}" event(s)`);
        return false;
      });
    } else if (wait.connect !== undefined) {
      const n = atLeast(wait.connect);
      await until(() => {
        if (counts.connect >= n) return true;
        assertAlive(`connect #${n}`);
        return false;
      });
    } else if (wait.disconnect !== undefined) {
      await until(() => counts.disconnect >= atLeast(wait.disconnect));
    } else if (wait.connect_error !== undefined) {
      await until(() => counts.connect_error >= atLeast(wait.connect_error));
    } else if (wait.upgrade !== undefined) {
      await until(() => counts.upgrade >= atLeast(wait.upgrade));
    } else {
      throw new Error(`unknown wait: ${JSON.stringify(wait)}`);
    }
  } else if (step.emit) {
    const [name, ...args] = fromJSONable(step.emit);
    if (step.ack) {
      await new Promise((resolve) => {
        socket.emit(name, ...args, (...ackArgs) => {
          print({ t: "ack", id: index, args: toJSONable(ackArgs) });
          resolve();
        });
      });
    } else {
      socket.emit(name, ...args);
    }
  } else if (step.sleep !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, step.sleep));
  } else if (step.disconnect) {
    socket.disconnect();
  } else if (step.connect) {
    socket.connect();
  } else if (step.until_stdin) {
    print({ t: "waiting_stdin", step: index });
    await until(() => {
      if (stdinLines.length > 0) return true;
      if (stdinClosed) throw new Error("stdin closed while waiting for a line");
      return false;
    });
    print({ t: "stdin", line: stdinLines.shift() });
  } else if (step.print_state) {
    print({
      t: "state",
      id: socket.id ?? null,
      connected: socket.connected,
      active: socket.active,
      recovered: Boolean(socket.recovered),
      transport: transportName(),
    });
  } else {
    throw new Error(`unknown step: ${JSON.stringify(step)}`);
  }
}

try {
  for (const [index, step] of steps.entries()) {
    current = index;
    await run(step, index);
  }
  clearTimeout(timer);
  if (socket.connected || socket.active) socket.disconnect();
  finish({ t: "done" }, 0);
} catch (err) {
  fail(`step ${current} ${JSON.stringify(steps[current])}: ${err?.message ?? err}`);
}
