package provisioner

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// Secret kinds a StorageClass can name, as csi.storage.k8s.io/<kind>-secret-{name,namespace}.
const (
	secretProvisioner       = "provisioner"
	secretControllerPublish = "controller-publish"
	secretNodeStage         = "node-stage"
	secretNodePublish       = "node-publish"
	secretControllerExpand  = "controller-expand"
	secretNodeExpand        = "node-expand"
	// secretControllerModify is recorded on the PV for ControllerModifyVolume
	// (external-provisioner 6.2+, read by the resizer).
	secretControllerModify = "controller-modify"
)

func secretKinds() []string {
	return []string{secretProvisioner, secretControllerPublish, secretNodeStage, secretNodePublish, secretControllerExpand, secretNodeExpand, secretControllerModify}
}

// secretKeys returns the StorageClass parameter keys of a secret kind; kind ""
// is the default secret (csi.storage.k8s.io/secret-{name,namespace}) used by
// every kind that names none of its own.
func secretKeys(kind string) (name, namespace string) {
	if kind == "" {
		return reservedPrefix + "secret-name", reservedPrefix + "secret-namespace"
	}
	return reservedPrefix + kind + "-secret-name", reservedPrefix + kind + "-secret-namespace"
}

// deprecatedSecretKeys are the old un-prefixed keys, still honoured (and, as
// with the sidecar, still passed on to the driver as ordinary parameters).
var deprecatedSecretKeys = map[string][2]string{
	secretProvisioner:       {"csiProvisionerSecretName", "csiProvisionerSecretNamespace"},
	secretControllerPublish: {"csiControllerPublishSecretName", "csiControllerPublishSecretNamespace"},
	secretNodeStage:         {"csiNodeStageSecretName", "csiNodeStageSecretNamespace"},
	secretNodePublish:       {"csiNodePublishSecretName", "csiNodePublishSecretNamespace"},
}

// secretTemplates returns the name and namespace templates for kind, or two
// empty strings when the StorageClass names no such secret.
func secretTemplates(kind string, params map[string]string) (nameTmpl, nsTmpl string, err error) {
	label := kind
	if label == "" {
		label = "default"
	}
	var names, namespaces int
	if dep, ok := deprecatedSecretKeys[kind]; ok {
		if v, ok := params[dep[0]]; ok {
			nameTmpl, names = v, names+1
		}
		if v, ok := params[dep[1]]; ok {
			nsTmpl, namespaces = v, namespaces+1
		}
	}
	nameKey, nsKey := secretKeys(kind)
	if v, ok := params[nameKey]; ok {
		nameTmpl, names = v, names+1
	}
	if v, ok := params[nsKey]; ok {
		nsTmpl, namespaces = v, namespaces+1
	}
	switch {
	case names > 1 || namespaces > 1:
		return "", "", fmt.Errorf("%s secret specified in StorageClass parameters with both the deprecated and the %s keys", label, reservedPrefix)
	case names != namespaces:
		return "", "", fmt.Errorf("StorageClass parameters %s and %s: both must be set for the %s secret, or neither", nameKey, nsKey, label)
	case names == 1 && (nameTmpl == "" || nsTmpl == ""):
		return "", "", fmt.Errorf("StorageClass parameters %s and %s: the %s secret's name and namespace must not be empty", nameKey, nsKey, label)
	}
	return nameTmpl, nsTmpl, nil
}

// secretRef resolves the secret reference of kind for a volume. Namespace
// templates may use ${pv.name} and ${pvc.namespace}; name templates also
// ${pvc.name} and ${pvc.annotations['key']}. claim may be nil (no PVC tokens)
// and the caller strips annotations where the sidecar does (provisioner secret).
func secretRef(kind string, params map[string]string, pvName string, claim *v1.PersistentVolumeClaim) (*v1.SecretReference, error) {
	nameTmpl, nsTmpl, err := secretTemplates(kind, params)
	if err != nil {
		return nil, err
	}
	if nameTmpl == "" && nsTmpl == "" {
		if nameTmpl, nsTmpl, err = secretTemplates("", params); err != nil {
			return nil, err
		}
	}
	if nameTmpl == "" && nsTmpl == "" {
		return nil, nil
	}
	nsParams := map[string]string{"pv.name": pvName}
	nameParams := map[string]string{"pv.name": pvName}
	if claim != nil {
		nsParams["pvc.namespace"] = claim.Namespace
		nameParams["pvc.namespace"] = claim.Namespace
		nameParams["pvc.name"] = claim.Name
		for k, v := range claim.Annotations {
			nameParams["pvc.annotations['"+k+"']"] = v
		}
	}
	ns, err := resolveTemplate(nsTmpl, nsParams)
	if err != nil {
		return nil, fmt.Errorf("%s secret namespace %q: %w", kind, nsTmpl, err)
	}
	if problems := validation.IsDNS1123Label(ns); len(problems) > 0 {
		return nil, fmt.Errorf("%s secret namespace %q resolved to %q, which is not a valid namespace name", kind, nsTmpl, ns)
	}
	name, err := resolveTemplate(nameTmpl, nameParams)
	if err != nil {
		return nil, fmt.Errorf("%s secret name %q: %w", kind, nameTmpl, err)
	}
	if problems := validation.IsDNS1123Subdomain(name); len(problems) > 0 {
		return nil, fmt.Errorf("%s secret name %q resolved to %q, which is not a valid secret name", kind, nameTmpl, name)
	}
	return &v1.SecretReference{Name: name, Namespace: ns}, nil
}

// resolveTemplate expands ${token}s; any unknown token is an error naming it.
func resolveTemplate(tmpl string, params map[string]string) (string, error) {
	out, missing := hub.ExpandTemplate(tmpl, params)
	if len(missing) > 0 {
		return "", fmt.Errorf("invalid tokens %q", missing)
	}
	return out, nil
}
