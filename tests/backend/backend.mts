// The TypeScript backend, run for real: the services of vendor/backend-services.ts
// (verbatim from the design) on Node with ioredis, over the tables of
// vendor/schema.sql in a real PostgreSQL (PGlite: Postgres compiled to WebAssembly,
// inside this process). What the design leaves undefined is supplied here, and only
// that:
//
//   - `Database`: `db.<table>.create({data})` / `.update({where: {id}, data})`, as the
//     services call it (Prisma's shape), one SQL statement each. Every failed
//     statement is COUNTED with its table, error and record; processRedisMessage only
//     logs errors, so a backend would lose such a row without noticing.
//   - `PythonServerClient`: RedisBridgeService.sendCommandToPython (the verbatim
//     method: `{command, data, timestamp}` on elysia:command) with a `requestId` in
//     data, then a wait for the answer with that id on python:command_result /
//     python:command_error.
//   - the methods the services call but the design does not define: savePrediction
//     (insert, or update by id once scored), updateModelStatus (the status the message
//     carries: trained / error / active / inactive), saveOptimizationResult,
//     processTradingSignal (insert into ai_signals), updateMarketData; and the
//     training-session row of python:model_trained (insert into ai_training_sessions).
//   - user_id: the one column botlib may leave out; the backend fills it from its own
//     ai_models row (the rule), in `create`.
//
// Driven over stdin/stdout, one JSON object per line: {"id", "op", "args"} in,
// {"id", "ok", "result" | "error"} out; "ready" is printed first. REDIS_URL names the
// server.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { PGlite } from "@electric-sql/pglite";
import Redis from "ioredis";
import { AIMLIntegrationService, RedisBridgeService } from "./vendor/backend-services.ts";

const here = new URL(".", import.meta.url).pathname;
const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379/0";
const ANSWER_MS = Number(process.env.ANSWER_MS ?? "120000");

const pg = new PGlite();
await pg.exec(readFileSync(`${here}vendor/schema.sql`, "utf8"));

type Failure = { table: string; op: string; error: string; record: string };
const failures: Failure[] = [];
const handled: Record<string, number> = {};
const optimizations: any[] = [];
const marketData: any[] = [];

// -- Database ---------------------------------------------------------------------
const columns: Record<string, Record<string, string>> = {};
for (const row of (
  await pg.query<{ table_name: string; column_name: string; data_type: string }>(
    "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public'",
  )
).rows) {
  (columns[row.table_name] ??= {})[row.column_name] = row.data_type;
}

function sqlValue(type: string, value: any): any {
  if (value === null || value === undefined) return null;
  if (type === "jsonb" && typeof value === "object") return JSON.stringify(value);
  return value; // a string for a JSONB column goes in as written (a plain string fails)
}

class Table {
  constructor(private name: string) {}

  private fields(data: Record<string, any>): [string[], any[]] {
    const known = columns[this.name];
    const keys = Object.keys(data).filter((k) => data[k] !== undefined);
    const unknown = keys.filter((k) => !(k in known));
    if (unknown.length) throw new Error(`unknown column(s) ${unknown.join(", ")} of ${this.name}`);
    return [keys, keys.map((k) => sqlValue(known[k], data[k]))];
  }

  private async run<T>(op: string, data: any, body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error: any) {
      failures.push({ table: this.name, op, error: String(error?.message ?? error), record: JSON.stringify(data).slice(0, 600) });
      throw error;
    }
  }

  async create({ data }: { data: Record<string, any> }): Promise<any> {
    return this.run("insert", data, async () => {
      const row = { ...data };
      if ("user_id" in columns[this.name] && row.user_id == null && row.model_id) {
        const owner = await pg.query<{ user_id: string }>("SELECT user_id FROM ai_models WHERE id = $1", [row.model_id]);
        if (owner.rows[0]) row.user_id = owner.rows[0].user_id;
      }
      const [keys, values] = this.fields(row);
      const marks = keys.map((_, i) => `$${i + 1}`).join(", ");
      const out = await pg.query(`INSERT INTO ${this.name} (${keys.join(", ")}) VALUES (${marks}) RETURNING *`, values);
      return out.rows[0];
    });
  }

  async update({ where, data }: { where: { id: string }; data: Record<string, any> }): Promise<any> {
    return this.run("update", { where, data }, async () => {
      const [keys, values] = this.fields(data);
      const sets = keys.map((k, i) => `${k} = $${i + 2}`).join(", ");
      const out = await pg.query(`UPDATE ${this.name} SET ${sets} WHERE id = $1 RETURNING *`, [where.id, ...values]);
      if (out.rows.length === 0) throw new Error(`no ${this.name} row with id ${where.id}`);
      return out.rows[0];
    });
  }
}

const db = {
  users: new Table("users"),
  ai_models: new Table("ai_models"),
  ai_predictions: new Table("ai_predictions"),
  ai_signals: new Table("ai_signals"),
  ai_training_sessions: new Table("ai_training_sessions"),
};

// -- PythonServerClient ----------------------------------------------------------------
const publisher = new Redis(url, { maxRetriesPerRequest: 3 });
const answers = new Redis(url, { maxRetriesPerRequest: 3 });
const waiting = new Map<string, { resolve: (v: any) => void; reject: (e: Error) => void }>();
answers.on("message", (channel: string, message: string) => {
  let body: any;
  try {
    body = JSON.parse(message);
  } catch {
    return;
  }
  const pending = waiting.get(body.request_id);
  if (!pending) return;
  waiting.delete(body.request_id);
  if (channel === "python:command_error") pending.reject(new Error(`${body.event}: ${body.reason}`));
  else pending.resolve(body.result);
});
await answers.subscribe("python:command_result", "python:command_error");

class PythonServerClient {
  async call(command: string, data: any): Promise<any> {
    const requestId = randomUUID();
    const answer = new Promise<any>((resolve, reject) => {
      waiting.set(requestId, { resolve, reject });
      setTimeout(() => {
        if (waiting.delete(requestId)) reject(new Error(`${command}: no answer in ${ANSWER_MS} ms`));
      }, ANSWER_MS);
    });
    // the verbatim transport, on a connection that may publish
    await RedisBridgeService.prototype.sendCommandToPython.call({ redis: publisher }, command, { ...data, requestId });
    return answer;
  }
  createModel(data: any) {
    return this.call("create_model", data);
  }
  startTraining(data: any) {
    return this.call("start_training", data);
  }
  generateSignal(data: any) {
    return this.call("generate_signal", data);
  }
  optimizeStrategy(data: any) {
    return this.call("optimize_strategy", data);
  }
}

// -- the methods the services call -----------------------------------------------------
class AIService extends AIMLIntegrationService {
  constructor(private database: typeof db, redis: Redis, python: PythonServerClient) {
    super(database as any, redis as any, python as any);
  }

  async savePrediction(data: any): Promise<void> {
    if (data.validated_at != null) {
      // a scored prediction: the row published earlier, under the same id
      const { actual_value, accuracy, validated_at } = data;
      await this.database.ai_predictions.update({ where: { id: data.id }, data: { actual_value, accuracy, validated_at } });
      return;
    }
    await this.database.ai_predictions.create({ data });
  }

  async updateModelStatus(modelId: string, status: string, extra: Record<string, any> = {}): Promise<void> {
    await this.database.ai_models.update({ where: { id: modelId }, data: { status, updated_at: new Date().toISOString(), ...extra } });
  }

  async saveOptimizationResult(data: any): Promise<void> {
    optimizations.push(data);
  }
}

class TradingService {
  async updateMarketData(data: any): Promise<void> {
    marketData.push(data);
  }
  async processTradingSignal(data: any): Promise<void> {
    await db.ai_signals.create({ data });
  }
}

class Bridge extends RedisBridgeService {
  // python:model_trained as the issue asks of it: the status it carries (trained,
  // error, active, inactive; the verbatim handler writes 'trained' whatever came), the
  // metrics, and the training-session row
  async handleModelTrained(data: any): Promise<void> {
    const ai = (this as any).aiService as AIService;
    const status = data.status ?? "trained";
    const extra: Record<string, any> = {};
    if (status === "trained") {
      extra.trained_at = new Date().toISOString();
      if (data.metrics) extra.performance_metrics = data.metrics;
    }
    await ai.updateModelStatus(data.modelId, status, extra);
    if (data.training_session) await db.ai_training_sessions.create({ data: data.training_session });
  }
}

const subscriber = new Redis(url, { maxRetriesPerRequest: 3 });
const reader = new Redis(url, { maxRetriesPerRequest: 3 });
const python = new PythonServerClient();
const ai = new AIService(db, reader, python);
subscriber.on("message", (channel: string) => {
  handled[channel] = (handled[channel] ?? 0) + 1;
});
new Bridge(subscriber as any, new TradingService() as any, ai as any);
await new Promise((r) => setTimeout(r, 200)); // the five SUBSCRIBEs are sent

// -- the driver ---------------------------------------------------------------------------
async function rows(sql: string, params: any[] = []): Promise<any[]> {
  return (await pg.query(sql, params)).rows;
}

const ops: Record<string, (...args: any[]) => Promise<any>> = {
  async seedUser() {
    return (await rows("INSERT INTO users (email) VALUES ('quant@example.com') RETURNING id"))[0].id;
  },
  createAIModel: (body: any) => ai.createAIModel(body),
  trainModel: (modelId: string, body: any) => ai.trainModel(modelId, body),
  generateTradingSignal: (modelId: string, symbol: string, currentData: any) => ai.generateTradingSignal(modelId, symbol, currentData),
  getPredictions: (modelId: string, symbol: string) => ai.getPredictions(modelId, symbol),
  optimizeStrategy: (strategyId: string, params: any) => ai.optimizeStrategy(strategyId, params),
  command: (command: string, data: any) => python.call(command, data),
  rows,
  async waitRows(sql: string, params: any[], wanted: number, timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = await rows(sql, params);
      if (got.length >= wanted || Date.now() > deadline) return got;
      await new Promise((r) => setTimeout(r, 200));
    }
  },
  async waitOptimization(timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    while (optimizations.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    return optimizations;
  },
  async report() {
    return { failures, handled, optimizations: optimizations.length, marketData: marketData.length };
  },
};

const input = createInterface({ input: process.stdin });
input.on("line", async (line: string) => {
  let request: any;
  try {
    request = JSON.parse(line);
  } catch {
    return;
  }
  const op = ops[request.op];
  try {
    if (!op) throw new Error(`unknown op ${request.op}`);
    const result = await op(...(request.args ?? []));
    process.stdout.write(JSON.stringify({ id: request.id, ok: true, result }) + "\n");
  } catch (error: any) {
    process.stdout.write(JSON.stringify({ id: request.id, ok: false, error: String(error?.message ?? error) }) + "\n");
  }
});
input.on("close", async () => {
  subscriber.disconnect();
  reader.disconnect();
  answers.disconnect();
  publisher.disconnect();
  await pg.close();
  process.exit(0);
});
console.log("ready");
