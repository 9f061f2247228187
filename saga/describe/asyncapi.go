package describe

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-go/choreo/internal/wire"
)

// AsyncAPIOptions describe the document AsyncAPI writes.
type AsyncAPIOptions struct {
	Title       string // info.title; "choreo flows" when empty
	Version     string // info.version; the flows and their versions when empty ("order-v1+order-v2")
	Description string // info.description; a sentence naming the flows when empty
	// Server, when set, is the NATS server's host:port the document names
	// (servers.nats); TLS says whether it takes TLS (protocol "tls").
	Server string
	TLS    bool
}

// AsyncAPI writes an AsyncAPI 3.0 document (JSON) of the flow versions: a
// channel for each subject a saga of theirs uses, with the message it
// carries (its payload's JSON Schema from Flow.Schemas), and the
// operations on them, each named with the service that owns it
// (x-choreo-service, and a "service:NAME" tag):
//
//   - start: the flow's start event, sent by its starters;
//   - for each step, the trigger its owner receives (the start event, or
//     each done event of the position before), the done event with its
//     result and the other outcomes it sends, and for a compensatable
//     step the compensation command it receives;
//   - the saga-wide events (deadline, resume, cancelled) and the timers.
//
// It is generated from the definitions (Flow.Describe, or Client.Flows from a
// running system), so it cannot drift from what runs.
func AsyncAPI(o AsyncAPIOptions, flows ...Flow) ([]byte, error) {
	if len(flows) == 0 {
		return nil, fmt.Errorf("saga: AsyncAPI needs at least one flow")
	}
	flows = slices.Clone(flows)
	sort.Slice(flows, func(i, j int) bool {
		if flows[i].Name != flows[j].Name {
			return flows[i].Name < flows[j].Name
		}
		return flows[i].Version < flows[j].Version
	})
	var names []string
	for _, f := range flows {
		if err := f.Check(); err != nil {
			return nil, fmt.Errorf("saga: AsyncAPI: flow %q v%d is not a definition Define makes: %w", f.Name, f.Version, err)
		}
		names = append(names, f.Name+"-"+wire.Version(f.Version))
	}
	d := &apiDoc{
		AsyncAPI:           "3.0.0",
		Info:               apiInfo{Title: o.Title, Version: o.Version, Description: o.Description},
		DefaultContentType: "application/json",
		Channels:           map[string]*apiChannel{},
		Operations:         map[string]*apiOperation{},
		Components:         apiComponents{Messages: map[string]*apiMessage{}},
	}
	if d.Info.Title == "" {
		d.Info.Title = "choreo flows"
	}
	if d.Info.Version == "" {
		d.Info.Version = strings.Join(names, "+")
	}
	if d.Info.Description == "" {
		d.Info.Description = "The NATS subjects and messages of the choreo sagas " + strings.Join(names, ", ") +
			", generated from their definitions. Each saga's events are appended to the stream " + wire.Stream +
			" with a compare-and-set on the saga's last sequence; its state rides in the Choreo-State header."
	}
	if o.Server != "" {
		proto := "nats"
		if o.TLS {
			proto = "tls"
		}
		d.Servers = map[string]*apiServer{"nats": {Host: o.Server, Protocol: proto, Description: "A NATS server with JetStream."}}
	}
	d.addCommonMessages()
	for _, f := range flows {
		d.addFlow(f)
	}
	return json.MarshalIndent(d, "", "  ")
}

type apiDoc struct {
	AsyncAPI           string                   `json:"asyncapi"`
	Info               apiInfo                  `json:"info"`
	Servers            map[string]*apiServer    `json:"servers,omitempty"`
	DefaultContentType string                   `json:"defaultContentType"`
	Channels           map[string]*apiChannel   `json:"channels"`
	Operations         map[string]*apiOperation `json:"operations"`
	Components         apiComponents            `json:"components"`
}

type apiInfo struct {
	Title       string `json:"title"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
}

type apiServer struct {
	Host        string `json:"host"`
	Protocol    string `json:"protocol"`
	Description string `json:"description,omitempty"`
}

type apiRef struct {
	Ref string `json:"$ref"`
}

type apiChannel struct {
	Address     string                   `json:"address"`
	Title       string                   `json:"title,omitempty"`
	Description string                   `json:"description,omitempty"`
	Messages    map[string]apiRef        `json:"messages"`
	Parameters  map[string]*apiParameter `json:"parameters,omitempty"`
}

type apiParameter struct {
	Description string   `json:"description,omitempty"`
	Enum        []string `json:"enum,omitempty"`
}

type apiTag struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

type apiOperation struct {
	Action   string   `json:"action"`
	Channel  apiRef   `json:"channel"`
	Title    string   `json:"title,omitempty"`
	Summary  string   `json:"summary,omitempty"`
	Messages []apiRef `json:"messages"`
	Tags     []apiTag `json:"tags,omitempty"`
	Services []string `json:"x-choreo-service"`
}

type apiComponents struct {
	Messages map[string]*apiMessage `json:"messages"`
}

type apiMessage struct {
	Name        string          `json:"name"`
	Title       string          `json:"title,omitempty"`
	Summary     string          `json:"summary,omitempty"`
	Description string          `json:"description,omitempty"`
	ContentType string          `json:"contentType,omitempty"`
	Headers     json.RawMessage `json:"headers,omitempty"`
	Payload     *apiPayload     `json:"payload,omitempty"`
}

// apiPayload is a Multi Format Schema Object: the registered schemas are
// JSON Schema 2020-12 documents, kept as they are rather than rewritten
// into AsyncAPI's draft-07 dialect.
type apiPayload struct {
	SchemaFormat string          `json:"schemaFormat"`
	Schema       json.RawMessage `json:"schema"`
}

// The headers choreo writes, as AsyncAPI schemas (draft-07 dialect).
var (
	logHeaders = json.RawMessage(`{"type":"object","properties":{` +
		`"Choreo-State":{"type":"string","description":"The saga's state after this event, in choreo's state codec."},` +
		`"` + jetstream.ExpectedLastSubjSeqHeader + `":{"type":"string","description":"The compare-and-set: the saga's last log sequence this event follows (0 for the start)."},` +
		`"` + jetstream.ExpectedLastSubjSeqSubjHeader + `":{"type":"string","description":"choreo.log.FLOW.SAGA-ID.>: the compare-and-set covers the saga's whole log, every version."},` +
		`"traceparent":{"type":"string","description":"W3C trace context: one trace per saga."}},` +
		`"required":["Choreo-State","` + jetstream.ExpectedLastSubjSeqHeader + `","` + jetstream.ExpectedLastSubjSeqSubjHeader + `"]}`)
	cmdHeaders = json.RawMessage(`{"type":"object","properties":{` +
		`"Nats-Msg-Id":{"type":"string","description":"Deterministic: the command is emitted once per compensation epoch."},` +
		`"Choreo-Epoch":{"type":"string","description":"The saga's compensation epoch (a resumed saga compensates again)."},` +
		`"Choreo-After":{"type":"string","description":"The log sequence of the event that made the compensation due."},` +
		`"traceparent":{"type":"string","description":"W3C trace context: one trace per saga."}}}`)
	timerHeaders = json.RawMessage(`{"type":"object","properties":{` +
		`"Choreo-Timer":{"type":"string","enum":["` + wire.TimerDeadline + `","` + wire.TimerExpire + `","` + wire.TimerBegin + `"],"description":"Which timer fired: the saga's deadline, the end of an ended saga's retention, or the begin of a saga started for later."}},` +
		`"required":["Choreo-Timer"]}`)
)

const (
	msgOutcome    = "StepOutcome"
	msgSagaEvent  = "SagaEvent"
	msgCompensate = "Compensate"
	msgTimer      = "Timer"
)

func (d *apiDoc) addCommonMessages() {
	d.Components.Messages[msgOutcome] = &apiMessage{Name: msgOutcome, Title: "A step's outcome other than its result",
		Description: "No payload: the phase is the subject's last token, and the attempt, error and time are in the state (Choreo-State).",
		Headers:     logHeaders}
	d.Components.Messages[msgSagaEvent] = &apiMessage{Name: msgSagaEvent, Title: "A saga-wide event",
		Description: "The deadline passed or a saga started for later began (no payload); or an operator's act, whose payload is its audit ({\"by\", \"at\", \"reason\", \"bulk\"}: who, when, why, the bulk act it was part of): a parked compensation resumed, the saga cancelled (it compensates), paused, unpaused, or noted (a dead letter replayed).",
		Headers:     logHeaders}
	d.Components.Messages[msgCompensate] = &apiMessage{Name: msgCompensate, Title: "A compensation command",
		Description: "No payload: run the step's compensation for this saga.", Headers: cmdHeaders}
	d.Components.Messages[msgTimer] = &apiMessage{Name: msgTimer, Title: "A broker-side timer",
		Description: "Fired by a JetStream message schedule: no payload.", Headers: timerHeaders}
}

// eventMessage adds the message of an event type as flow version f
// describes it and returns its id: the type's own name, shared by every
// flow version that gives the type the same schema. A type another flow
// version gives another schema (or whose id another type's name already
// took) gets an id of its own, so that one flow's registration cannot
// change how another's messages read.
func (d *apiDoc) eventMessage(f Flow, eventType string) string {
	m := &apiMessage{Name: eventType, Title: eventType, ContentType: "application/json", Headers: logHeaders}
	if raw, ok := f.Schemas[eventType]; ok && isSchema(raw) {
		m.Payload = &apiPayload{SchemaFormat: "application/schema+json;version=draft-2020-12", Schema: raw}
		var head struct {
			Description string `json:"description"`
		}
		if json.Unmarshal(raw, &head) == nil {
			m.Summary = head.Description
		}
	} else {
		m.Description = "No schema was registered for this type (saga.WithSchemas): any JSON."
	}
	id := apiID(eventType)
	if old, ok := d.Components.Messages[id]; ok {
		if sameMessage(old, m) {
			return id
		}
		id += "__" + apiID(f.Name) + "_" + wire.Version(f.Version)
	}
	d.Components.Messages[id] = m
	return id
}

func sameMessage(a, b *apiMessage) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// apiIDChars are the characters AsyncAPI keeps in component, channel and
// operation ids.
var apiIDChars = regexp.MustCompile(`[^A-Za-z0-9_-]`)

func apiID(s string) string { return apiIDChars.ReplaceAllString(s, "_") }

// outcomePhases are the phases a step's outcome events may have besides
// done, by whether the step is compensated and completed later.
func outcomePhases(kind StepKind, waits bool) []string {
	ps := []string{wire.PhaseFailed, wire.PhaseRetry, wire.PhaseTimedOut, wire.PhaseAbandoned, wire.PhaseSkipped, wire.PhaseHeld}
	if waits {
		ps = append(ps, wire.PhaseWaiting)
	}
	if kind == Compensatable {
		ps = append(ps, wire.PhaseCompensated, wire.PhaseCompensationRetry, wire.PhaseParked)
	}
	return ps
}

func (d *apiDoc) channel(id, address, title string, msgs []string, params map[string]*apiParameter) {
	c := &apiChannel{Address: address, Title: title, Messages: map[string]apiRef{}, Parameters: params}
	for _, m := range msgs {
		c.Messages[m] = apiRef{"#/components/messages/" + m}
	}
	d.Channels[id] = c
}

func (d *apiDoc) operation(id, action, channel, title string, services []string) {
	op := &apiOperation{Action: action, Channel: apiRef{"#/channels/" + channel}, Title: title, Services: services}
	for m := range d.Channels[channel].Messages {
		op.Messages = append(op.Messages, apiRef{"#/channels/" + channel + "/messages/" + m})
	}
	sort.Slice(op.Messages, func(i, j int) bool { return op.Messages[i].Ref < op.Messages[j].Ref })
	for _, s := range services {
		op.Tags = append(op.Tags, apiTag{Name: "service:" + s})
	}
	d.Operations[id] = op
}

// ownerOf is the service a step's operations name: its Owner, or
// "unknown" when the flow does not declare one.
func ownerOf(s Step) []string {
	if s.Owner == "" {
		return []string{"unknown"}
	}
	return []string{s.Owner}
}

func (d *apiDoc) addFlow(f Flow) {
	v := wire.Version(f.Version)
	p := apiID(f.Name) + "_" + v
	sagaID := &apiParameter{Description: "The saga's id: 1 to 128 characters of [A-Za-z0-9_-]."}
	log := func(step, phase string) string {
		return wire.Log + f.Name + ".{sagaId}." + v + "." + step + "." + phase
	}
	idOnly := map[string]*apiParameter{"sagaId": sagaID}
	withPhase := func(phases []string) map[string]*apiParameter {
		return map[string]*apiParameter{"sagaId": sagaID, "phase": {Description: "The outcome.", Enum: phases}}
	}
	positions := f.positions()
	var owners []string // every step owner: they all run the flow's timers
	for _, s := range f.Steps {
		if o := ownerOf(s)[0]; !slices.Contains(owners, o) {
			owners = append(owners, o)
		}
	}
	sort.Strings(owners)
	starters := f.StartedBy
	if len(starters) == 0 {
		starters = []string{"unknown"}
	}

	start := p + "_start"
	d.channel(start, log(wire.SagaStep, wire.PhaseStart), fmt.Sprintf("%s %s: a saga starts", f.Name, v),
		[]string{d.eventMessage(f, f.Input)}, idOnly)
	d.operation(start+"_send", "send", start, fmt.Sprintf("Start a saga of %s %s", f.Name, v), starters)
	sagaWide := p + "_saga"
	d.channel(sagaWide, log(wire.SagaStep, "{phase}"), fmt.Sprintf("%s %s: saga-wide events", f.Name, v),
		[]string{msgSagaEvent}, withPhase([]string{wire.PhaseDeadline, wire.PhaseBegin, wire.PhaseResume, wire.PhaseCancelled, wire.PhasePaused, wire.PhaseUnpaused, wire.PhaseNoted}))
	d.operation(sagaWide+"_send", "send", sagaWide, "A runner records the deadline or the begin of a saga started for later; an operator resumes, cancels, pauses or unpauses a saga",
		append(slices.Clone(owners), "operator"))

	for i, pos := range positions {
		for _, s := range pos {
			owner := ownerOf(s)
			sp := p + "_" + apiID(s.Name)
			done := sp + "_done"
			d.channel(done, log(s.Name, wire.PhaseDone), fmt.Sprintf("%s %s: step %s done", f.Name, v, s.Name),
				[]string{d.eventMessage(f, s.EventType)}, idOnly)
			outcome := sp + "_outcome"
			d.channel(outcome, log(s.Name, "{phase}"), fmt.Sprintf("%s %s: step %s's other outcomes", f.Name, v, s.Name),
				[]string{msgOutcome}, withPhase(outcomePhases(s.Kind, s.Wait > 0)))
			if i == 0 {
				d.operation(sp+"_take", "receive", start, fmt.Sprintf("%s takes step %s when a saga starts", owner[0], s.Name), owner)
			} else {
				for _, prev := range positions[i-1] {
					d.operation(sp+"_take_"+apiID(prev.Name), "receive", p+"_"+apiID(prev.Name)+"_done",
						fmt.Sprintf("%s takes step %s once %s is done", owner[0], s.Name, prev.Name), owner)
				}
			}
			d.operation(done+"_send", "send", done, fmt.Sprintf("%s records step %s's result", owner[0], s.Name), owner)
			d.operation(outcome+"_send", "send", outcome, fmt.Sprintf("%s records step %s's other outcomes", owner[0], s.Name), owner)
			if s.Kind == Compensatable {
				undo := s.Undo
				if undo == "" {
					undo = "its compensation"
				}
				cmd := sp + "_undo"
				d.channel(cmd, wire.Cmd+f.Name+".{sagaId}."+v+"."+s.Name+"."+wire.Undo,
					fmt.Sprintf("%s %s: compensate step %s (%s)", f.Name, v, s.Name, undo), []string{msgCompensate}, idOnly)
				d.operation(cmd+"_receive", "receive", cmd, fmt.Sprintf("%s runs %s for step %s", owner[0], undo, s.Name), owner)
			}
		}
	}
	timers := p + "_timers"
	d.channel(timers, wire.Timer+f.Name+".{sagaId}."+v, fmt.Sprintf("%s %s: deadlines and expiries", f.Name, v), []string{msgTimer}, idOnly)
	d.operation(timers+"_receive", "receive", timers, "A runner of the flow records the deadline or expires the ended saga", owners)
}
