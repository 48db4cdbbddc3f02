// A Runwire client in Node.js over the HTTP edge, with Connect's own libraries: the Connect
// protocol (JSON and binary) and gRPC-Web, over HTTP/1.1. No generated code: the services are
// built at run time from a FileDescriptorSet of protos/ (and google/rpc/error_details.proto,
// to read error details). tests/test_interop.py compiles that set and runs this with
//   RUNWIRE_HTTP_URL=http://127.0.0.1:<port> RUNWIRE_TOKEN=<write token>
//   RUNWIRE_DESCRIPTORS=<path of the set> node --test
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

const baseUrl = process.env.RUNWIRE_HTTP_URL ?? "http://127.0.0.1:50080";
const token = process.env.RUNWIRE_TOKEN;
const descriptors = process.env.RUNWIRE_DESCRIPTORS;

const registry = descriptors
  ? createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptors)))
  : undefined;

function lookup(kind, name) {
  const found = registry?.[kind](name);
  assert.ok(found, `${name} is not in the descriptor set ${descriptors}`);
  return found;
}

// Enums are numbers in protobuf-es; look them up by their names in the contract.
function enumValue(enumName, valueName) {
  const value = lookup("getEnum", enumName).values.find((v) => v.name === valueName);
  assert.ok(value, `${enumName} has no ${valueName}`);
  return value.number;
}

const stateType = (name) => enumValue("runwire.v1.StateType", `STATE_TYPE_${name}`);

// The token goes with every call as a header, set by an interceptor.
const bearer = (next) => async (request) => {
  request.header.set("authorization", `Bearer ${token}`);
  return next(request);
};

const transports = {
  "Connect, JSON": (interceptors) =>
    createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false, interceptors }),
  "Connect, binary": (interceptors) =>
    createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true, interceptors }),
  "gRPC-Web": (interceptors) =>
    createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors }),
};

function clients(transport) {
  return {
    flows: createClient(lookup("getService", "runwire.v1.FlowService"), transport),
    runs: createClient(lookup("getService", "runwire.v1.FlowRunService"), transport),
  };
}

async function failure(promise) {
  return promise.then(
    () => assert.fail("the call succeeded"),
    (error) => {
      assert.ok(error instanceof ConnectError, `not a ConnectError: ${error}`);
      return error;
    },
  );
}

for (const [protocol, transportWith] of Object.entries(transports)) {
  test(`a run's life over ${protocol}: create, get, list, set a state, watch`, async () => {
    const { flows, runs } = clients(transportWith([bearer]));
    const options = { timeoutMs: 10_000 };
    const name = `connect-${randomUUID().slice(0, 8)}`;
    const { flow } = await flows.createFlow({ flow: { name } }, options);
    assert.equal(flow.name, name);
    const created = await runs.createFlowRun(
      { flowRun: { flowId: flow.id, tags: ["node"] } },
      options,
    );
    assert.ok(created.created);
    const run = created.flowRun;
    assert.equal(run.flowId, flow.id);
    assert.equal(run.state.type, stateType("PENDING"));

    const { flowRun: got } = await runs.getFlowRun({ flowRunId: run.id }, options);
    assert.equal(got.id, run.id);
    assert.deepEqual(got.tags, ["node"]);

    const running = await runs.setFlowRunState(
      { flowRunId: run.id, state: { type: stateType("RUNNING") } },
      options,
    );
    assert.equal(
      running.result.status,
      enumValue("runwire.v1.SetStateStatus", "SET_STATE_STATUS_ACCEPT"),
    );
    assert.equal(running.result.state.type, stateType("RUNNING"));

    const page = await runs.listFlowRuns(
      {
        filter: {
          flows: { name: { anyOf: { values: [name] } } },
          flowRuns: { state: { type: { anyOf: { values: [stateType("RUNNING")] } } } },
        },
        pageSize: 10,
      },
      options,
    );
    assert.deepEqual(
      page.flowRuns.map((r) => r.id),
      [run.id],
    );

    // The stream opens with the run's current state, says it has caught up, then streams
    // what happens: here the run's completion, after which it ends.
    const events = [];
    for await (const message of runs.watchFlowRun({ flowRunId: run.id }, { timeoutMs: 20_000 })) {
      events.push(message);
      if (message.event.case === "caughtUp") {
        const completed = await runs.setFlowRunState(
          { flowRunId: run.id, state: { type: stateType("COMPLETED") } },
          options,
        );
        assert.equal(completed.result.state.type, stateType("COMPLETED"));
      }
    }
    // Heartbeats (every 10 s by default) may come between the others on a slow machine.
    const kinds = events
      .map((message) => message.event.case)
      .filter((kind) => kind !== "heartbeat");
    assert.deepEqual(kinds, ["flowRunState", "caughtUp", "flowRunState", "end"]);
    assert.deepEqual(
      events
        .filter((message) => message.event.case === "flowRunState")
        .map((message) => message.event.value.state.type),
      [stateType("RUNNING"), stateType("COMPLETED")],
    );
    assert.equal(
      events.at(-1).event.value.reason,
      enumValue("runwire.v1.StreamEnd.Reason", "REASON_RUN_FINISHED"),
    );
    // Cursors (int64, so bigint here) only grow, so a client can resume after the last one.
    const cursors = events.map((message) => message.cursor);
    assert.ok(cursors.every((c) => typeof c === "bigint"));
    assert.ok(cursors.every((c, i) => i === 0 || c >= cursors[i - 1]));
  });

  test(`errors over ${protocol} arrive with their code and google.rpc details`, async () => {
    const { runs } = clients(transportWith([bearer]));
    const errorInfo = lookup("getMessage", "google.rpc.ErrorInfo");

    const id = randomUUID();
    const missing = await failure(runs.getFlowRun({ flowRunId: id }));
    assert.equal(missing.code, Code.NotFound);
    const [info] = missing.findDetails(errorInfo);
    assert.ok(info, `no ErrorInfo in ${JSON.stringify(missing.details)}`);
    assert.equal(info.domain, "runwire.dev");
    assert.equal(info.reason, "RESOURCE_NOT_FOUND");
    const [resource] = missing.findDetails(lookup("getMessage", "google.rpc.ResourceInfo"));
    assert.equal(resource.resourceName, id);

    const invalid = await failure(runs.getFlowRun({ flowRunId: "not-a-uuid" }));
    assert.equal(invalid.code, Code.InvalidArgument);
    assert.match(invalid.rawMessage, /flow_run_id/);
    assert.equal(invalid.findDetails(errorInfo)[0].reason, "INVALID_FIELD");
    const [bad] = invalid.findDetails(lookup("getMessage", "google.rpc.BadRequest"));
    assert.deepEqual(
      bad.fieldViolations.map((v) => v.field),
      ["flow_run_id"],
    );

    // Without the interceptor, no token: the server turns the call away.
    const anonymous = clients(transportWith([])).runs;
    const refused = await failure(anonymous.getFlowRun({ flowRunId: id }));
    assert.equal(refused.code, Code.Unauthenticated);
    assert.equal(refused.findDetails(errorInfo)[0].reason, "TOKEN_MISSING");
  });
}
