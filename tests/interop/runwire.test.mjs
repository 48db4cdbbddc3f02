// A Runwire client in Node.js, written from the .proto files alone: no generated code and no
// Python. tests/test_interop.py starts a real server and runs this with
//   RUNWIRE_ADDRESS=127.0.0.1:<port> RUNWIRE_TOKEN=<write token> node --test
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const here = dirname(fileURLToPath(import.meta.url));
const protos = join(here, "..", "..", "protos");
const address = process.env.RUNWIRE_ADDRESS ?? "127.0.0.1:50051";
const token = process.env.RUNWIRE_TOKEN;

// The loader options of docs/calling-from-other-languages.md.
const options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
const definition = protoLoader.loadSync(
  [
    "runwire/v1/flow_service.proto",
    "runwire/v1/flow_run_service.proto",
    "runwire/v1/log_service.proto",
  ],
  { ...options, includeDirs: [protos] },
);
const runwire = grpc.loadPackageDefinition(definition).runwire.v1;

// The token goes with every call as metadata. (Over TLS, grpc-js can also attach it as call
// credentials; see docs/calling-from-other-languages.md.)
const metadata = new grpc.Metadata();
if (token) metadata.set("authorization", `Bearer ${token}`);

let flows, runs, logs;

before(() => {
  const plain = grpc.credentials.createInsecure();
  flows = new runwire.FlowService(address, plain);
  runs = new runwire.FlowRunService(address, plain);
  logs = new runwire.LogService(address, plain);
});

after(() => {
  for (const client of [flows, runs, logs]) client.close();
});

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 10_000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

function setState(flowRunId, type) {
  return call(runs, "SetFlowRunState", { flow_run_id: flowRunId, state: { type } });
}

test("a run's life from Node: create, states, logs, list, watch to the end", async () => {
  const name = `node-${randomUUID().slice(0, 8)}`;
  const { flow } = await call(flows, "CreateFlow", { flow: { name } });
  assert.equal(flow.name, name);
  const { flow_run: run } = await call(runs, "CreateFlowRun", {
    flow_run: { flow_id: flow.id, tags: ["node"] },
  });
  assert.equal(run.state.type, "STATE_TYPE_PENDING");

  // Follow the run while it changes: the stream opens with the run's current state, then
  // says it has caught up, then streams what happens.
  const events = [];
  let caughtUp;
  const live = new Promise((resolve) => (caughtUp = resolve));
  const watched = new Promise((resolve, reject) => {
    const stream = runs.WatchFlowRun({ flow_run_id: run.id }, metadata);
    stream.on("data", (message) => {
      events.push(message);
      if (message.event === "caught_up") caughtUp();
    });
    stream.on("end", resolve);
    stream.on("error", reject);
  });
  await live;

  const running = await setState(run.id, "STATE_TYPE_RUNNING");
  assert.equal(running.result.status, "SET_STATE_STATUS_ACCEPT");
  await call(logs, "CreateLogs", {
    logs: [1, 2, 3].map((i) => ({
      flow_run_id: run.id,
      name: "node",
      level: 20,
      message: `line ${i}`,
      timestamp: { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 },
    })),
  });
  const completed = await setState(run.id, "STATE_TYPE_COMPLETED");
  assert.equal(completed.result.status, "SET_STATE_STATUS_ACCEPT");
  assert.equal(completed.result.state.type, "STATE_TYPE_COMPLETED");

  const listed = await call(logs, "ListLogs", {
    filter: { flow_run_id: { any_of: { values: [run.id] } } },
  });
  assert.deepEqual(
    listed.logs.map((line) => line.message),
    ["line 1", "line 2", "line 3"],
  );

  const page = await call(runs, "ListFlowRuns", {
    filter: {
      flows: { name: { any_of: { values: [name] } } },
      flow_runs: { state: { type: { any_of: { values: ["STATE_TYPE_COMPLETED"] } } } },
    },
    page_size: 10,
  });
  assert.deepEqual(
    page.flow_runs.map((r) => r.id),
    [run.id],
  );

  await watched;
  const kinds = events.map((message) => message.event);
  assert.ok(kinds.includes("caught_up"), kinds.join(","));
  const states = events
    .filter((message) => message.event === "flow_run_state")
    .map((message) => message.flow_run_state.state.type);
  assert.deepEqual(states, ["STATE_TYPE_PENDING", "STATE_TYPE_RUNNING", "STATE_TYPE_COMPLETED"]);
  assert.equal(events.filter((message) => message.event === "log").length, 3);
  const end = events.at(-1);
  assert.equal(end.event, "end");
  assert.equal(end.end.reason, "REASON_RUN_FINISHED");
  // Cursors only grow, so a client can resume after the last one it saw.
  const cursors = events.map((message) => BigInt(message.cursor));
  assert.ok(cursors.every((c, i) => i === 0 || c >= cursors[i - 1]));
});

// google.rpc.Status and the details Runwire sends, as on the wire (google/rpc/status.proto,
// error_details.proto and google/protobuf/any.proto).
const rpc = new protobuf.Root();
protobuf.parse(
  `syntax = "proto3"; package google.protobuf; message Any { string type_url = 1; bytes value = 2; }`,
  rpc,
  { keepCase: true },
);
protobuf.parse(
  `
  syntax = "proto3";
  package google.rpc;
  message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
  message BadRequest {
    message FieldViolation { string field = 1; string description = 2; }
    repeated FieldViolation field_violations = 1;
  }
`,
  rpc,
  { keepCase: true },
);

function detail(status, name) {
  const packed = status.details.find((d) => d.type_url.endsWith(`/google.rpc.${name}`));
  return packed && rpc.lookupType(`google.rpc.${name}`).decode(packed.value);
}

test("errors arrive with their code and rich details", async () => {
  const error = await call(runs, "GetFlowRun", { flow_run_id: "not-a-uuid" }).then(
    () => assert.fail("an invalid id was accepted"),
    (e) => e,
  );
  assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
  assert.match(error.details, /flow_run_id/);
  const [raw] = error.metadata.get("grpc-status-details-bin");
  const status = rpc.lookupType("google.rpc.Status").decode(raw);
  assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
  const info = detail(status, "ErrorInfo");
  assert.equal(info.domain, "runwire.dev");
  assert.equal(info.reason, "INVALID_FIELD");
  assert.deepEqual(
    detail(status, "BadRequest").field_violations.map((v) => v.field),
    ["flow_run_id"],
  );

  const missing = await call(runs, "GetFlowRun", { flow_run_id: randomUUID() }).then(
    () => assert.fail("a run that does not exist was found"),
    (e) => e,
  );
  assert.equal(missing.code, grpc.status.NOT_FOUND);
});
