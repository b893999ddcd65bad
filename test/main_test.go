// Package test holds packdir's integration tests: they build the binary,
// mount stores in subprocesses and drive them with real programs.
package test

import (
	"testing"

	"github.com/packdir/packdir/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
