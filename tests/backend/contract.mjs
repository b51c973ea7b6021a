// The records the backend stores, as its tables define them (shared/backend/schema.sql):
// which fields, which may be null, which values are allowed.

const SIGNAL_FIELDS = [
  "id", "model_id", "bot_id", "symbol", "signal_type", "signal_strength", "confidence",
  "predicted_price", "predicted_direction", "predicted_volatility", "risk_score",
  "expected_return", "stop_loss", "take_profit", "position_size", "reasoning", "metadata",
  "created_at", "expires_at", "executed_at", "status",
];
const PREDICTION_FIELDS = [
  "id", "model_id", "symbol", "prediction_type", "input_data", "prediction_value",
  "confidence", "prediction_horizon", "actual_value", "accuracy", "created_at",
  "validated_at",
];

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
const isTime = (v) => typeof v === "string" && !Number.isNaN(Date.parse(v));
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function fieldsOf(record, expected) {
  const problems = [];
  const keys = Object.keys(record);
  for (const f of expected) if (!(f in record)) problems.push(`missing field ${f}`);
  for (const k of keys) if (!expected.includes(k)) problems.push(`unexpected field ${k}`);
  return problems;
}

function within(problems, record, field, lo, hi, nullable) {
  const v = record[field];
  if (v == null) {
    if (!nullable) problems.push(`${field} is null`);
    return;
  }
  if (!isNumber(v)) problems.push(`${field} is not a number: ${JSON.stringify(v)}`);
  else if (v < lo || v > hi) problems.push(`${field} ${v} outside [${lo}, ${hi}]`);
}

export function checkSignal(s) {
  const p = fieldsOf(s, SIGNAL_FIELDS);
  for (const f of ["id", "model_id", "symbol"]) {
    if (typeof s[f] !== "string" || !s[f]) p.push(`${f} must be a non-empty string`);
  }
  if (typeof s.symbol === "string" && s.symbol.length > 20) p.push("symbol longer than 20");
  if (!["buy", "sell", "hold", "close"].includes(s.signal_type)) {
    p.push(`signal_type ${JSON.stringify(s.signal_type)}`);
  }
  within(p, s, "signal_strength", 0, 1, false);
  within(p, s, "confidence", 0, 1, false);
  within(p, s, "predicted_volatility", 0, 9.9999, true);
  within(p, s, "risk_score", 0, 9.9999, true);
  for (const f of ["predicted_price", "expected_return", "stop_loss", "take_profit"]) {
    if (s[f] != null && !isNumber(s[f])) p.push(`${f} is not a number`);
  }
  within(p, s, "position_size", 0, 1e12, true);
  if (s.predicted_direction != null && !["up", "down", "sideways"].includes(s.predicted_direction)) {
    p.push(`predicted_direction ${JSON.stringify(s.predicted_direction)}`);
  }
  if (!isObject(s.metadata)) p.push("metadata must be an object");
  if (!isObject(s.reasoning)) p.push("reasoning must be a JSON object (JSONB column)");
  if (!isTime(s.created_at)) p.push(`created_at ${JSON.stringify(s.created_at)}`);
  for (const f of ["expires_at", "executed_at"]) {
    if (s[f] != null && !isTime(s[f])) p.push(`${f} ${JSON.stringify(s[f])}`);
  }
  if (!["pending", "executed", "expired", "cancelled"].includes(s.status)) {
    p.push(`status ${JSON.stringify(s.status)}`);
  }
  return p;
}

export function checkPrediction(r) {
  const p = fieldsOf(r, PREDICTION_FIELDS);
  for (const f of ["id", "model_id", "symbol"]) {
    if (typeof r[f] !== "string" || !r[f]) p.push(`${f} must be a non-empty string`);
  }
  if (!["price", "direction", "volatility", "trend"].includes(r.prediction_type)) {
    p.push(`prediction_type ${JSON.stringify(r.prediction_type)}`);
  }
  if (!isObject(r.input_data)) p.push("input_data must be an object");
  if (!isNumber(r.prediction_value)) p.push("prediction_value must be a number");
  within(p, r, "confidence", 0, 1, false);
  if (!Number.isInteger(r.prediction_horizon) || r.prediction_horizon < 1) {
    p.push(`prediction_horizon ${JSON.stringify(r.prediction_horizon)} (minutes)`);
  }
  if (!isTime(r.created_at)) p.push(`created_at ${JSON.stringify(r.created_at)}`);
  const scored = r.validated_at != null;
  if (scored) {
    if (!isTime(r.validated_at)) p.push(`validated_at ${JSON.stringify(r.validated_at)}`);
    if (!isNumber(r.actual_value)) p.push("a scored prediction needs actual_value");
    within(p, r, "accuracy", 0, 1, false);
  } else if (r.actual_value != null || r.accuracy != null) {
    p.push("actual_value/accuracy set before validated_at");
  }
  return p;
}
