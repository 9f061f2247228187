package saga_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/choreo-go/choreo/saga"
	"github.com/choreo-go/choreo/saga/access"
)

// matches is NATS subject matching: "*" one token, ">" the rest.
func matches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, t := range f {
		if t == ">" {
			return len(s) > i
		}
		if i >= len(s) || (t != "*" && t != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

// may is nats-server's decision: allowed by a rule and denied by none.
func may(r access.Rules, subject string) bool {
	for _, d := range r.Deny {
		if matches(d, subject) {
			return false
		}
	}
	for _, a := range r.Allow {
		if matches(a, subject) {
			return true
		}
	}
	return false
}

func TestPermissionsDeriveFromTheFlow(t *testing.T) {
	charge := saga.NewStep[Ticket, Ticket]("charge", saga.Owner("payment"))
	reserve := saga.NewStep[Ticket, Ticket]("reserve", saga.Owner("inventory"))
	confirm := saga.NewStep[Ticket, Ticket]("confirm", saga.Owner("order"), saga.Pivot())
	f := saga.MustDefine[Ticket]("shop", 1, charge, reserve, confirm, saga.StartedBy("order"))
	perms, err := access.Permissions(f)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := access.Reader("gateway", f)
	if err != nil {
		t.Fatal(err)
	}
	perms["gateway"] = reader
	for _, tc := range []struct {
		who, subject string
		want         bool
	}{
		{"payment", "choreo.log.shop.s1.v1.charge.done", true},
		{"payment", "choreo.log.shop.s1.v1.charge.compensated", true},
		{"payment", "choreo.log.shop.s1.v1.reserve.done", false},
		{"payment", "choreo.log.shop.s1.v1._saga.start", false},
		{"order", "choreo.log.shop.s1.v1._saga.start", true},
		{"order", "choreo.log.shop.s1.v1.charge.done", false},
		{"inventory", "choreo.log.shop.s1.v1.charge.failed", false},
		{"gateway", "choreo.log.shop.s1.v1.charge.done", false},
		{"payment", "choreo.cmd.shop.s1.v1.reserve.undo", true},
		{"payment", "$JS.API.CONSUMER.MSG.NEXT.CHOREO.shop_v1_charge_do", true},
		{"payment", "$JS.ACK.CHOREO.shop_v1_charge_do.1.2.3.4.5.6", true},
		{"payment", "$JS.API.CONSUMER.MSG.NEXT.CHOREO.shop_v1_reserve_do", false},
		{"payment", "$JS.ACK.CHOREO.shop_v1_reserve_do.1.2.3.4.5.6", false},
		{"payment", "$JS.API.CONSUMER.CREATE.CHOREO.shop_v1_reserve_do.choreo.log.>", false},
		{"payment", "$JS.API.CONSUMER.DELETE.CHOREO.shop_v1_reserve_do", false},
		{"payment", "$JS.API.CONSUMER.PAUSE.CHOREO.shop_v1_reserve_do", false},
		{"payment", "$JS.API.CONSUMER.CREATE.CHOREO.anything", false},
		{"order", "$JS.API.CONSUMER.MSG.NEXT.CHOREO.shop__end_order", true},
		{"payment", "$JS.API.CONSUMER.MSG.NEXT.CHOREO.shop__end_order", false},
		// A reader reads by direct gets and creates no consumer (issue 19
		// point 3): these two were true while it made ordered consumers.
		{"gateway", "$JS.API.CONSUMER.CREATE.CHOREO.abc.choreo.log.shop.>", false},
		{"gateway", "$JS.API.CONSUMER.MSG.NEXT.CHOREO.abc", false},
		{"gateway", "$JS.API.CONSUMER.CREATE.CHOREO", false},
		{"gateway", "$JS.API.CONSUMER.CREATE.CHOREO.forge_rogue", false},
		{"gateway", "$JS.API.CONSUMER.MSG.NEXT.CHOREO.shop_v1_charge_do", false},
		{"gateway", "$JS.API.CONSUMER.CREATE.CHOREO.shop_v1_charge_do", false},
		{"gateway", "$JS.API.CONSUMER.DELETE.CHOREO.shop__end_order", false},
		{"gateway", "$JS.API.CONSUMER.CREATE.CHOREO_TIMERS.x", false},
		{"gateway", "$JS.API.DIRECT.GET.CHOREO", true},
		// Nor on the flow registry, which it reads by direct gets: these
		// were true while it watched the bucket through ordered consumers.
		{"gateway", "$JS.API.CONSUMER.CREATE.KV_CHOREO_FLOWS.rogue", false},
		{"gateway", "$JS.API.CONSUMER.CREATE.KV_CHOREO_FLOWS.abc.$KV.CHOREO_FLOWS.>", false},
		{"gateway", "$JS.API.CONSUMER.MSG.NEXT.KV_CHOREO_FLOWS.abc", false},
		{"gateway", "$JS.API.DIRECT.GET.KV_CHOREO_FLOWS", true},
		{"gateway", "$JS.API.DIRECT.GET.KV_CHOREO_FLOWS.$KV.CHOREO_FLOWS.def.shop.v1.payment", true},
		{"gateway", "$KV.CHOREO_FLOWS.def.shop.v1.payment", false},
		{"payment", "$JS.API.CONSUMER.CREATE.KV_CHOREO_FLOWS.rogue", false},
	} {
		if got := may(perms[tc.who].Publish, tc.subject); got != tc.want {
			t.Errorf("%s publishing %s: %v, want %v", tc.who, tc.subject, got, tc.want)
		}
	}
	for who, a := range perms {
		for _, s := range []string{"$JS.API.STREAM.PURGE.CHOREO", "$JS.API.STREAM.DELETE.CHOREO", "$JS.API.STREAM.UPDATE.CHOREO",
			"$JS.API.STREAM.CREATE.CHOREO", "$JS.API.STREAM.PURGE.CHOREO_DLQ", "$JS.API.STREAM.DELETE.CHOREO_DLQ"} {
			if may(a.Publish, s) {
				t.Errorf("%s may publish %s", who, s)
			}
		}
		if !may(a.Subscribe, access.InboxPrefix(who)+".x") || may(a.Subscribe, "_INBOX.x") || may(a.Subscribe, "_INBOX_nobody.x") {
			t.Errorf("%s subscribes %v: want its own inbox only", who, a.Subscribe)
		}
	}
}

func TestPermissionsNeedDefinitionsAndOwners(t *testing.T) {
	if _, err := access.Permissions(access.Definition(nil)); !errors.Is(err, saga.ErrInvalidFlow) {
		t.Errorf("nil flow: %v, want ErrInvalidFlow", err)
	}
	unowned := saga.MustDefine[Ticket]("unowned", 1, saga.NewStep[Ticket, Ticket]("x"))
	if _, err := access.Permissions(unowned); !errors.Is(err, saga.ErrInvalidFlow) {
		t.Errorf("step without owner: %v, want ErrInvalidFlow", err)
	}
	if _, err := saga.Define[Ticket]("bad", 1, saga.NewStep[Ticket, Ticket]("x"), saga.StartedBy("no way")); !errors.Is(err, saga.ErrInvalidFlow) {
		t.Errorf("bad StartedBy: %v, want ErrInvalidFlow", err)
	}
}
