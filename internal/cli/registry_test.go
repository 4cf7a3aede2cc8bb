package cli

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/cli/cli/config/types"
	"github.com/moby/moby/api/types/registry"
)

func TestAuthKey(t *testing.T) {
	for in, want := range map[string]string{
		"": dockerHubAuthKey, "docker.io": dockerHubAuthKey, "https://index.docker.io/v1/": dockerHubAuthKey,
		"localhost:5000": "localhost:5000", "http://localhost:5000/": "localhost:5000", "reg.example/v2/": "reg.example",
	} {
		if got := authKey(in); got != want {
			t.Errorf("authKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCredentialsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	if got := configDir(); got != dir {
		t.Fatalf("configDir = %s", got)
	}
	if a, err := registryAuthFor("localhost:5000/x:v1"); err != nil || a != "" {
		t.Fatalf("no credentials yet: %q %v", a, err)
	}
	cf, err := loadConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if err := cf.GetCredentialsStore("localhost:5000").Store(types.AuthConfig{Username: "u", Password: "p", ServerAddress: "localhost:5000"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil || !strings.Contains(string(b), `"localhost:5000"`) || !strings.Contains(string(b), `"auth"`) {
		t.Fatalf("config.json: %s %v", b, err)
	}
	a, err := registryAuthFor("localhost:5000/x:v1")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.URLEncoding.DecodeString(a)
	if err != nil {
		t.Fatal(err)
	}
	var ac registry.AuthConfig
	if err := json.Unmarshal(raw, &ac); err != nil || ac.Username != "u" || ac.Password != "p" || ac.ServerAddress != "localhost:5000" {
		t.Fatalf("auth header %s: %v", raw, err)
	}
	if a, _ := registryAuthFor("busybox"); a != "" {
		t.Fatalf("Docker Hub got credentials of another registry: %s", a)
	}
}

func TestDrainStream(t *testing.T) {
	if err := drainStream(strings.NewReader(`{"status":"Pulling"}` + "\n" + `{"status":"done"}`)); err != nil {
		t.Fatal(err)
	}
	err := drainStream(strings.NewReader(`{"status":"x"}{"errorDetail":{"message":"boom"},"error":"boom"}`))
	if err == nil || err.Error() != "boom" {
		t.Fatalf("err = %v", err)
	}
}

func TestParsePlatformFlag(t *testing.T) {
	p, err := parsePlatformFlag("linux/arm64/v8")
	if err != nil || p.OS != "linux" || p.Architecture != "arm64" || p.Variant != "v8" {
		t.Fatalf("%+v %v", p, err)
	}
	if _, err := parsePlatformFlag("a/b/c/d"); err == nil {
		t.Fatal("accepted a/b/c/d")
	}
}
