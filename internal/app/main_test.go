package app

import (
	"os"
	"testing"

	"github.com/csi-hub/csi-hub/test/cluster"
)

func TestMain(m *testing.M) {
	os.Exit(cluster.Main(m, cluster.Options{}))
}
