package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"testing"
)

func TestRunChecksItsFlags(t *testing.T) {
	none := func(string) string { return "" }
	for _, tc := range []struct {
		name string
		args []string
		want func(error) bool
	}{
		{"no brokers", nil, func(err error) bool { return err != nil && err.Error() == "missing --brokers (OMS_KAFKA_BROKERS)" }},
		{"help", []string{"-h"}, func(err error) bool { return errors.Is(err, flag.ErrHelp) }},
		{"share above one", []string{"--brokers", "127.0.0.1:1", "--short-pick-share", "1.5"}, func(err error) bool { return err != nil }},
		{"unknown flag", []string{"--nope"}, func(err error) bool { return err != nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := run(context.Background(), tc.args, none, io.Discard); !tc.want(err) {
				t.Errorf("got %v", err)
			}
		})
	}
}
