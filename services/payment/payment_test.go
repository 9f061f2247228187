package payment_test

import (
	"errors"
	"testing"

	"github.com/choreo-go/choreo/services/payment"
)

func TestAuthorize(t *testing.T) {
	if err := payment.Authorize("4242424242424242", 100); err != nil {
		t.Errorf("good card: %v", err)
	}
	if err := payment.Authorize(payment.DeclinedCard, 100); !errors.Is(err, payment.ErrDeclined) {
		t.Errorf("declined card: %v", err)
	}
}
