// keychain-check reads {"secrets": [core/v1 Secret...], "images": ["ref", ...]} on stdin and prints,
// for each image, the credential go-containerregistry's Kubernetes keychain (pkg/authn/kubernetes,
// which follows the kubelet's credential matching) resolves from those Secrets:
// {"image": {"username": "...", "password": "..."}} or {"image": null} when it falls back to anonymous.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/authn/kubernetes"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
)

type input struct {
	Secrets []corev1.Secret `json:"secrets"`
	Images  []string        `json:"images"`
}

type credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("decode input: %v", err)
	}
	keychain, err := kubernetes.NewFromPullSecrets(context.Background(), in.Secrets)
	if err != nil {
		fail("keychain: %v", err)
	}
	out := map[string]*credential{}
	for _, image := range in.Images {
		ref, err := name.ParseReference(image)
		if err != nil {
			fail("image %q: %v", image, err)
		}
		authenticator, err := keychain.Resolve(ref.Context())
		if err != nil {
			fail("resolve %q: %v", image, err)
		}
		if authenticator == authn.Anonymous {
			out[image] = nil
			continue
		}
		config, err := authenticator.Authorization()
		if err != nil {
			fail("authorization %q: %v", image, err)
		}
		out[image] = &credential{Username: config.Username, Password: config.Password}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("encode: %v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "keychain-check: "+format+"\n", args...)
	os.Exit(1)
}
