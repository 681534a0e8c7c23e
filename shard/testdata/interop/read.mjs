// Reads an Arrow IPC file (with footer) written by Loom and prints its schema
// metadata and rows as JSON, binary values replaced by their sha256 and
// length, so that shard/interop_test.go can compare them with what Go wrote.
//
//   node read.mjs path/to/shard-00000.arrow
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { RecordBatchFileReader } from "apache-arrow";

function norm(v) {
  if (v === null || v === undefined) return null;
  if (v instanceof Uint8Array) {
    return { sha256: createHash("sha256").update(v).digest("hex"), len: v.length };
  }
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "number" || typeof v === "string" || typeof v === "boolean") return v;
  if (typeof v.toArray === "function" && typeof v.length === "number" && !(v.toJSON && v[Symbol.iterator] === undefined)) {
    return Array.from(v, norm);
  }
  if (typeof v.toJSON === "function") {
    const o = v.toJSON();
    const out = {};
    for (const k of Object.keys(o)) out[k] = norm(o[k]);
    return out;
  }
  if (Array.isArray(v) || ArrayBuffer.isView(v)) return Array.from(v, norm);
  return v;
}

const file = process.argv[2];
const reader = RecordBatchFileReader.from(readFileSync(file));
reader.open();
const meta = Object.fromEntries(reader.schema.metadata);
const fields = reader.schema.fields.map((f) => f.name);
const rows = [];
let batches = 0;
for (const batch of reader) {
  batches++;
  for (let i = 0; i < batch.numRows; i++) {
    const row = {};
    for (const name of fields) row[name] = norm(batch.getChild(name).get(i));
    rows.push(row);
  }
}
process.stdout.write(JSON.stringify({ meta, fields, batches, numBatches: reader.numRecordBatches, rows }) + "\n");
