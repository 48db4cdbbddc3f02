// One transport for the whole app: Connect's binary format to the server that served the page
// (same origin, so no CORS), with the signed-in token on every call.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ConcurrencyLimitService } from "./gen/runwire/v1/concurrency_limit_service_pb";
import { DeploymentService } from "./gen/runwire/v1/deployment_service_pb";
import { FlowRunService } from "./gen/runwire/v1/flow_run_service_pb";
import { FlowService } from "./gen/runwire/v1/flow_service_pb";
import { LogService } from "./gen/runwire/v1/log_service_pb";
import { ServerService } from "./gen/runwire/v1/server_service_pb";
import { TaskRunService } from "./gen/runwire/v1/task_run_service_pb";
import { session } from "./session";

const withToken: Interceptor = (next) => async (req) => {
  const token = session.token();
  if (token) req.header.set("authorization", `Bearer ${token}`);
  try {
    return await next(req);
  } catch (err) {
    // A token that expired or was revoked while the page was open: back to sign-in.
    if (ConnectError.from(err).code === Code.Unauthenticated) session.needSignIn();
    throw err;
  }
};

const transport = createConnectTransport({
  baseUrl: typeof location === "undefined" ? "http://127.0.0.1:50080" : location.origin,
  useBinaryFormat: true,
  interceptors: [withToken],
});

export const api = {
  flows: createClient(FlowService, transport),
  flowRuns: createClient(FlowRunService, transport),
  taskRuns: createClient(TaskRunService, transport),
  logs: createClient(LogService, transport),
  deployments: createClient(DeploymentService, transport),
  limits: createClient(ConcurrencyLimitService, transport),
  server: createClient(ServerService, transport),
};
