package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/describe"
	"github.com/choreo-go/choreo/saga/sagatest"
)

// The payloads of the trip issue 21 tells of: a new user inserted seat
// between flight and hotel, and had to make seat an identity step.
type (
	InTrip   struct{ Who string }
	InFlight struct{ Who, Flight string }
	InSeat   struct{ Seat string }
	InHotel  struct{ Hotel string }
	InMail   struct{ To string }
)

func TestDefineInputSources(t *testing.T) {
	flight := func() *saga.Step[InTrip, InFlight] { return saga.NewStep[InTrip, InFlight]("flight") }
	other := saga.NewStep[InTrip, InFlight]("flight") // same name, another step value
	for _, tc := range []struct {
		name  string
		items func() []saga.Item
		want  error  // nil: Define accepts the flow
		says  string // what the error says
	}{
		{"the issue's trip", func() []saga.Item {
			f := flight()
			return []saga.Item{f, saga.NewStep[InFlight, InSeat]("seat"), saga.NewStep[InFlight, InHotel]("hotel", saga.InputFrom(f))}
		}, nil, ""},
		{"without InputFrom the hotel is given the seat", func() []saga.Item {
			return []saga.Item{flight(), saga.NewStep[InFlight, InSeat]("seat"), saga.NewStep[InFlight, InHotel]("hotel")}
		}, saga.ErrInvalidFlow, `"hotel" takes saga_test.InFlight but is given saga_test.InSeat`},
		{"the flow's input after two steps", func() []saga.Item {
			return []saga.Item{flight(), saga.NewStep[InFlight, InSeat]("seat"), saga.NewStep[InTrip, InMail]("mail", saga.FlowInput())}
		}, nil, ""},
		{"the step after one with InputFrom takes its result", func() []saga.Item {
			f := flight()
			return []saga.Item{f, saga.NewStep[InFlight, InSeat]("seat"), saga.NewStep[InFlight, InHotel]("hotel", saga.InputFrom(f)), saga.NewStep[InHotel, InMail]("mail")}
		}, nil, ""},
		{"a group member's result after the group", func() []saga.Item {
			f := flight()
			return []saga.Item{saga.Parallel(f, saga.NewStep[InTrip, InSeat]("seat")), saga.NewStep[InFlight, InHotel]("hotel", saga.InputFrom(f))}
		}, nil, ""},
		{"InputFrom a later step", func() []saga.Item {
			h := saga.NewStep[InFlight, InHotel]("hotel")
			return []saga.Item{flight(), saga.NewStep[InHotel, InSeat]("seat", saga.InputFrom(h)), h}
		}, saga.ErrInvalidFlow, `step "seat" takes its input from step "hotel", which does not come before it`},
		{"InputFrom a sibling in the group", func() []saga.Item {
			f := flight()
			return []saga.Item{saga.Parallel(f, saga.NewStep[InFlight, InSeat]("seat", saga.InputFrom(f)))}
		}, saga.ErrInvalidFlow, "does not come before it"},
		{"InputFrom a step not in the flow", func() []saga.Item {
			return []saga.Item{saga.NewStep[InTrip, InTrip]("first"), saga.NewStep[InFlight, InHotel]("hotel", saga.InputFrom(flight()))}
		}, saga.ErrInvalidFlow, `step "hotel" takes its input from step "flight", which is not in the flow`},
		{"InputFrom another step value of the same name", func() []saga.Item {
			return []saga.Item{flight(), saga.NewStep[InFlight, InHotel]("hotel", saga.InputFrom(other))}
		}, saga.ErrInvalidFlow, "another step value"},
		{"InputFrom a step of another result type", func() []saga.Item {
			f := flight()
			return []saga.Item{f, saga.NewStep[InFlight, InSeat]("seat"), saga.NewStep[InSeat, InHotel]("hotel", saga.InputFrom(f))}
		}, saga.ErrInvalidFlow, `step "hotel" takes saga_test.InSeat but step "flight", its input (InputFrom), returns saga_test.InFlight`},
		{"FlowInput of another type", func() []saga.Item {
			return []saga.Item{flight(), saga.NewStep[InFlight, InHotel]("hotel", saga.FlowInput())}
		}, saga.ErrInvalidFlow, `step "hotel" takes saga_test.InFlight but the flow's input (FlowInput) is saga_test.InTrip`},
		{"InputFrom a nil step", func() []saga.Item {
			var f *saga.Step[InTrip, InFlight]
			return []saga.Item{flight(), saga.NewStep[InFlight, InHotel]("hotel", saga.InputFrom(f))}
		}, saga.ErrInvalidOption, "nil step"},
		{"both InputFrom and FlowInput", func() []saga.Item {
			f := flight()
			return []saga.Item{f, saga.NewStep[InFlight, InHotel]("hotel", saga.InputFrom(f), saga.FlowInput())}
		}, saga.ErrInvalidOption, "one place"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := saga.Define[InTrip]("input-sources", 1, tc.items()...)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Define = %v, want a flow", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.says) {
				t.Errorf("Define = %v\nwant %v saying %q", err, tc.want, tc.says)
			}
		})
	}
}

// The trip runs: seat has a result of its own, hotel gets the
// flight's result (and so does its compensation), mail the trip itself,
// and the validator is asked about each input under its own type. The
// hotel step, reused by version 1, works there too.
func TestInputFromRunsAndCompensates(t *testing.T) {
	flight := saga.NewStep[InTrip, InFlight]("flight")
	seat := saga.NewStep[InFlight, InSeat]("seat")
	hotel := saga.NewStep[InFlight, InHotel]("hotel", saga.InputFrom(flight))
	mail := saga.NewStep[InTrip, InMail]("mail", saga.FlowInput(), saga.Pivot())
	v1 := saga.MustDefine[InTrip]("input-trip", 1, flight, hotel)
	v2 := saga.MustDefine[InTrip]("input-trip", 2, flight, seat, hotel, mail)

	var mu sync.Mutex
	var calls []string // "step got input", in no set order
	note := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, fmt.Sprintf(format, args...))
	}
	validated := map[string]string{} // the validated input's JSON -> its event type
	srv := sagatest.NewServer(t)
	c := srv.Client()
	r, err := saga.NewRunner(c, saga.WithValidator(func(eventType string, data []byte) error {
		mu.Lock()
		defer mu.Unlock()
		validated[string(data)] = eventType
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	err = errors.Join(
		saga.Handle(r, flight, func(_ context.Context, in InTrip) (InFlight, error) {
			return InFlight{Who: in.Who, Flight: "LH-" + in.Who}, nil
		}, func(context.Context, InTrip, InFlight) error { return nil }),
		saga.Handle(r, seat, func(_ context.Context, in InFlight) (InSeat, error) {
			note("seat got %s", in.Flight)
			return InSeat{Seat: "12A"}, nil
		}, func(context.Context, InFlight, InSeat) error { return nil }),
		saga.Handle(r, hotel, func(_ context.Context, in InFlight) (InHotel, error) {
			note("hotel got %s", in.Flight)
			return InHotel{Hotel: "ritz-" + in.Who}, nil
		}, func(_ context.Context, in InFlight, out InHotel) error {
			note("hotel undo got %s %s", in.Flight, out.Hotel)
			return nil
		}),
		saga.Handle(r, mail, func(_ context.Context, in InTrip) (InMail, error) {
			note("mail got %s", in.Who)
			if in.Who == "bob" {
				return InMail{}, saga.Abortf("no mail for %s", in.Who)
			}
			return InMail{To: in.Who}, nil
		}, nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	sagatest.Run(t, r)
	ctx := context.Background()
	for _, s := range []struct {
		f  *saga.Flow[InTrip]
		id string
	}{{v2, "ada"}, {v2, "bob"}, {v1, "cy"}} {
		if err := saga.Start(ctx, c, s.f, s.id, InTrip{Who: s.id}); err != nil {
			t.Fatal(err)
		}
	}
	if st := sagatest.AwaitStatus(t, c, v2, "ada", 20*time.Second); st.Status != saga.StatusCompleted {
		t.Errorf("ada's trip %s, want completed", st.Status)
	}
	if st := sagatest.AwaitStatus(t, c, v2, "bob", 20*time.Second); st.Status != saga.StatusCompensated {
		t.Errorf("bob's trip %s, want compensated", st.Status)
	}
	if st := sagatest.AwaitStatus(t, c, v1, "cy", 20*time.Second); st.Status != saga.StatusCompleted {
		t.Errorf("cy's trip on version 1 %s, want completed", st.Status)
	}
	mu.Lock()
	defer mu.Unlock()
	got := slices.Sorted(slices.Values(calls))
	want := []string{
		"hotel got LH-ada", "hotel got LH-bob", "hotel got LH-cy",
		"hotel undo got LH-bob ritz-bob",
		"mail got ada", "mail got bob",
		"seat got LH-ada", "seat got LH-bob",
	}
	if !slices.Equal(got, want) {
		t.Errorf("the handlers were given\n %q\nwant\n %q", got, want)
	}
	for _, v := range []struct {
		payload any
		typ     string
	}{
		{InTrip{Who: "ada"}, "InTrip"},                       // flight's and mail's
		{InFlight{Who: "ada", Flight: "LH-ada"}, "InFlight"}, // seat's and hotel's
	} {
		data, _ := json.Marshal(v.payload)
		if typ, ok := validated[string(data)]; !ok || typ != v.typ {
			t.Errorf("input %s validated as %q (%v), want %q", data, typ, ok, v.typ)
		}
	}
	for data, typ := range validated {
		if typ != "InTrip" && typ != "InFlight" {
			t.Errorf("input %s validated as %q: no step takes that", data, typ)
		}
	}
}

// A flow's description says where a step's input comes from when it is
// not the chain's, so two definitions that differ only there differ in
// the registry; InputFrom the step just before is the chain, described as
// such. Mermaid draws it; Check refuses a source that is not earlier.
func TestDescribeInputSource(t *testing.T) {
	flight := saga.NewStep[InTrip, InFlight]("flight")
	chained := saga.MustDefine[InTrip]("input-described", 1, flight,
		saga.NewStep[InFlight, InFlight]("seat"), saga.NewStep[InFlight, InHotel]("hotel"))
	named := saga.MustDefine[InTrip]("input-described", 2, flight,
		saga.NewStep[InFlight, InFlight]("seat"), saga.NewStep[InFlight, InHotel]("hotel", saga.InputFrom(flight)))
	self := saga.MustDefine[InTrip]("input-described", 3, flight,
		saga.NewStep[InFlight, InFlight]("seat", saga.InputFrom(flight)), saga.NewStep[InTrip, InHotel]("home", saga.FlowInput()))

	var froms [][]string
	for _, f := range []*saga.Flow[InTrip]{chained, named, self} {
		var from []string
		for _, s := range f.Describe().Steps {
			from = append(from, s.InputFrom)
		}
		froms = append(froms, from)
	}
	want := [][]string{{"", "", ""}, {"", "", "flight"}, {"", "", describe.FromFlow}}
	if !slices.EqualFunc(froms, want, slices.Equal) {
		t.Errorf("InputFrom of versions 1-3: %q, want %q", froms, want)
	}
	a, b := chained.Describe(), named.Describe()
	b.Version = a.Version
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) == string(jb) {
		t.Errorf("two definitions differing only in hotel's input are described alike: %s", ja)
	}
	if m := named.Describe().Mermaid(); !strings.Contains(m, "s_flight -. input .-> s_hotel") {
		t.Errorf("Mermaid draws no input edge from flight to hotel:\n%s", m)
	}
	if m := self.Describe().Mermaid(); !strings.Contains(m, "start -. input .-> s_home") {
		t.Errorf("Mermaid draws no input edge from the start to home:\n%s", m)
	}
	for _, from := range []string{"hotel", "nobody", "seat"} {
		lie := named.Describe()
		lie.Steps = slices.Clone(lie.Steps)
		lie.Steps[1].InputFrom = from // seat from itself, from a later step, from no step
		if err := lie.Check(); err == nil {
			t.Errorf("Check accepts seat taking its input from %q", from)
		}
	}
	if err := self.Describe().Check(); err != nil {
		t.Errorf("Check refuses what Define made: %v", err)
	}
}
