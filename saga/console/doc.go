// Package console is choreo's operator console: a web page, served by
// Handler over a saga.Client, that shows and acts on a running system
// without being compiled with its flows (runners register the definitions
// they serve in the broker).
//
// Its pages:
//
//   - Flows: every registered flow version, drawn step by step (parallel
//     groups side by side, each step's owner, the pivot and retried steps
//     marked, each compensation's name) with live counts per step from
//     Client.StepCounts: running, waiting (no runner of the version serves
//     the step), failed, compensating, compensated, parked, completed.
//   - Dead letters: what choreo could not process, newest first, with the
//     reason, the subject, when, and the start of the payload; Replay
//     (Client.ReplayDeadLetter) sends one back only when it can be processed
//     now, and the page shows what was done or why not.
//   - Parked sagas: sagas whose compensation ran out of retries
//     (compensation_failed), with the failed steps' errors; Retry
//     (Client.RetryCompensation) runs their compensations again.
//   - Scheduled sagas: sagas started for later (saga.At, saga.After) that
//     have not begun, the next to begin first, with when each begins.
//   - Bulk acts: a form for an act over every saga a filter selects
//     (cancel, retry, replay dead letters, pause, resume): a dry run first
//     (ops.Client.PlanBulk: the count and a sample), then Start
//     (StartBulk) with a progress bar and Stop (StopBulk); the acts done,
//     with their outcomes, and the flow versions and steps paused, with
//     who paused them and why.
//   - A saga: its state, steps and timeline, with times, reasons, its
//     trace id, when a scheduled saga begins, and who paused it.
//
// The page is plain HTML, JavaScript and CSS embedded in the binary: it
// fetches nothing from elsewhere. Its JSON endpoints, under api/, are for
// scripts too: GET api/flows, api/flows/{flow}/v{N}/counts,
// api/deadletters, api/parked, api/scheduled, api/sagas/{flow}/{id},
// api/bulk (the acts and the pauses), api/bulk/{id}; POST
// api/deadletters/{seq}/replay, api/sagas/{flow}/{id}/retry, api/bulk/plan
// and api/bulk (a bulk act as JSON: action, flow, version, status, step,
// since, where, reason, rate; the act runs on in the console's process
// after the answer) and api/bulk/{id}/stop. A bad
// request is a 4xx with {"error": "..."}; a library error says what the
// library said, 404 for a saga or dead letter that is not there and 409
// for an act that does not apply (not replayable, not parked).
//
// # Security
//
// The console acts with its client's identity: serve it to operators only.
// It binds nothing itself (cmd/choreo's console verb listens on loopback
// unless told otherwise). Acts are POST requests and must carry the
// ActionHeader, which another site's page cannot send without a CORS
// preflight the console never grants; a request a browser marks
// cross-site (Sec-Fetch-Site, Origin) is refused too, and so is a read of
// the API it marks so (another site's <img> cannot make the console scan
// the broker), and a Host other than localhost, an IP address or one given
// with AllowHosts (DNS rebinding). Everything read from the broker reaches the page as text,
// never as markup, under a Content-Security-Policy that allows only the
// console's own script and style.
package console
