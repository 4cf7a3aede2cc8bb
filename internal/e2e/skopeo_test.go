package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSkopeoInterop: what berth saves, skopeo reads as a docker-archive and as an OCI archive;
// what skopeo writes in both formats, berth loads with the same image ID and layers.
func TestSkopeoInterop(t *testing.T) {
	t.Parallel()
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skipping: skopeo is not installed (bench/lib/peers.sh installs it)")
	}
	d := startDaemon(t)
	id := d.importBusybox(t, "busybox:latest", "-c", `CMD ["sh"]`)
	before := d.inspect(t, "busybox:latest")
	dir := t.TempDir()
	saved := filepath.Join(dir, "saved.tar")
	d.mustBerth(t, nil, "save", "-o", saved, "busybox:latest")

	sk := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(skopeo, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// skopeo reads berth's archive both ways and sees the same config (image ID).
	for _, src := range []string{"docker-archive:" + saved, "oci-archive:" + saved} {
		var cfg struct {
			RootFS struct {
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
		}
		if err := json.Unmarshal([]byte(sk("inspect", "--config", src)), &cfg); err != nil {
			t.Fatalf("skopeo inspect --config %s: %v", src, err)
		}
		if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != before.RootFS.Layers[0] {
			t.Errorf("%s: diff IDs %v, want %v", src, cfg.RootFS.DiffIDs, before.RootFS.Layers)
		}
	}
	// skopeo writes both formats; berth loads each with the layers unchanged and, as its image
	// ID, the config digest skopeo wrote (the same ID for a docker-archive; converting to OCI
	// rewrites the config, so a new one there).
	for i, dst := range []string{"docker-archive:" + filepath.Join(dir, "sk-docker.tar") + ":busybox:latest", "oci-archive:" + filepath.Join(dir, "sk-oci.tar") + ":busybox:latest"} {
		sk("copy", "-q", "docker-archive:"+saved, dst)
		d.mustBerth(t, nil, "rmi", "busybox:latest")
		path := strings.SplitN(strings.TrimPrefix(strings.TrimPrefix(dst, "docker-archive:"), "oci-archive:"), ":", 2)[0]
		d.mustBerth(t, nil, "load", "-i", path)
		ref := "busybox:latest"
		if i == 1 {
			// An OCI archive names the image by its ref.name annotation; tag by ID if needed.
			if r := d.berth(t, nil, "image", "inspect", ref); r.code != 0 {
				d.mustBerth(t, nil, "tag", id, ref)
			}
		}
		var m struct{ Config struct{ Digest string } }
		src := strings.TrimSuffix(dst, ":busybox:latest")
		if err := json.Unmarshal([]byte(sk("inspect", "--raw", src)), &m); err != nil {
			t.Fatal(err)
		}
		wantID := m.Config.Digest
		if i == 0 && wantID != id {
			t.Errorf("skopeo changed the config of a docker-archive copy: %s != %s", wantID, id)
		}
		after := d.inspect(t, ref)
		if after.ID != wantID || strings.Join(after.RootFS.Layers, ",") != strings.Join(before.RootFS.Layers, ",") {
			t.Errorf("%s round trip: ID %s layers %v, want %s %v", dst, after.ID, after.RootFS.Layers, wantID, before.RootFS.Layers)
		}
	}
}
