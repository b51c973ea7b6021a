// A stand-in for the TypeScript (Elysia) trading backend, written the way it is:
// Node.js + ioredis, subscribed to botlib's `python:*` channels. Every record is
// checked field by field against the contract (the backend's ai_signals and
// ai_predictions tables); what arrived and what was wrong is written as JSON.
//
//   node standin.mjs --out summary.json [--until-signals N] [--idle-ms 20000]
//
// Prints "ready" once subscribed. Writes the summary and exits on SIGTERM/SIGINT,
// after N signals, or after --idle-ms without a message (exit code 0 either way;
// the caller judges the summary). REDIS_URL names the server.
import { writeFileSync } from "node:fs";
import Redis from "ioredis";
import { checkPrediction, checkSignal } from "./contract.mjs";

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const out = opt("out", "standin-summary.json");
const untilSignals = Number(opt("until-signals", "0"));
const idleMs = Number(opt("idle-ms", "0"));

const summary = {
  channels: {},
  signals: {}, // model_id -> count
  predictions: {}, // model_id -> { unscored: [ids], scored: [ids] }
  signal_ids: [],
  problems: [],
};
let signals = 0;
let idleTimer = null;

const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379/0", {
  maxRetriesPerRequest: 3,
  lazyConnect: false,
});

function finish() {
  writeFileSync(out, JSON.stringify(summary));
  redis.disconnect();
  process.exit(0);
}

function problem(channel, why, raw) {
  if (summary.problems.length < 200) summary.problems.push({ channel, why, raw: raw.slice(0, 500) });
}

redis.on("pmessage", (_pattern, channel, message) => {
  summary.channels[channel] = (summary.channels[channel] ?? 0) + 1;
  let record;
  try {
    record = JSON.parse(message);
  } catch (err) {
    problem(channel, `not JSON: ${err.message}`, message);
    return;
  }
  if (channel === "python:trading_signal") {
    for (const why of checkSignal(record)) problem(channel, why, message);
    summary.signals[record.model_id] = (summary.signals[record.model_id] ?? 0) + 1;
    summary.signal_ids.push(record.id);
    signals += 1;
    if (untilSignals && signals >= untilSignals) finish();
  } else if (channel === "python:ai_prediction") {
    for (const why of checkPrediction(record)) problem(channel, why, message);
    const seen = (summary.predictions[record.model_id] ??= { unscored: [], scored: [] });
    (record.validated_at == null ? seen.unscored : seen.scored).push(record.id);
  }
  if (idleMs) {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(finish, idleMs);
  }
});

redis.on("error", (err) => problem("redis", err.message, ""));
process.on("SIGTERM", finish);
process.on("SIGINT", finish);

await redis.psubscribe("python:*");
if (idleMs) idleTimer = setTimeout(finish, idleMs);
console.log("ready");
