package snapshotter

import (
	"fmt"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// Annotations the snapshot-controller copies onto a dynamically created
// content from the class's csi.storage.k8s.io/snapshotter-secret-{name,namespace}
// (resolved), so the secret is known even after the class is gone. An
// administrator sets them on a pre-provisioned content.
const (
	AnnDeletionSecretName      = "snapshot.storage.kubernetes.io/deletion-secret-name"
	AnnDeletionSecretNamespace = "snapshot.storage.kubernetes.io/deletion-secret-namespace"
)

// snapshotterSecretRef is the CreateSnapshot/DeleteSnapshot secret named by
// the content's annotations, or nil when there is none.
func snapshotterSecretRef(content *snapv1.VolumeSnapshotContent) (*v1.SecretReference, error) {
	return annotatedSecretRef(content.Annotations, AnnDeletionSecretName, AnnDeletionSecretNamespace)
}

// annotatedSecretRef is the secret named by the annotations nameKey and nsKey.
func annotatedSecretRef(annotations map[string]string, nameKey, nsKey string) (*v1.SecretReference, error) {
	name, hasName := annotations[nameKey]
	ns, hasNS := annotations[nsKey]
	if !hasName && !hasNS {
		return nil, nil
	}
	if name == "" || ns == "" {
		return nil, fmt.Errorf("annotations %s and %s must both be set and non-empty (got name %q, namespace %q)",
			nameKey, nsKey, name, ns)
	}
	return &v1.SecretReference{Name: name, Namespace: ns}, nil
}

// listSecretRef is the ListSnapshots secret from the class parameters
// csi.storage.k8s.io/snapshotter-list-secret-{name,namespace}, whose values
// may use ${volumesnapshotcontent.name}; nil when the class names none.
func listSecretRef(class *snapv1.VolumeSnapshotClass, contentName string) (*v1.SecretReference, error) {
	return classSecretRef("VolumeSnapshotClass "+class.Name, class.Parameters, ParamSnapshotterListSecretName, ParamSnapshotterListSecretNamespace,
		map[string]string{"volumesnapshotcontent.name": contentName})
}

// classSecretRef resolves the secret a class names in its parameters nameKey
// and nsKey, whose values may use the tokens in vars; nil when it names none.
func classSecretRef(class string, params map[string]string, nameKey, nsKey string, vars map[string]string) (*v1.SecretReference, error) {
	nameTmpl, hasName := params[nameKey]
	nsTmpl, hasNS := params[nsKey]
	if !hasName && !hasNS {
		return nil, nil
	}
	if nameTmpl == "" || nsTmpl == "" {
		return nil, fmt.Errorf("%s: %s and %s must both be set and non-empty", class, nameKey, nsKey)
	}
	ns, err := expandTemplate(nsTmpl, vars)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", class, nsKey, err)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s %q resolved to %q, not a valid namespace name", class, nsKey, nsTmpl, ns)
	}
	name, err := expandTemplate(nameTmpl, vars)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", class, nameKey, err)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s %q resolved to %q, not a valid secret name", class, nameKey, nameTmpl, name)
	}
	return &v1.SecretReference{Name: name, Namespace: ns}, nil
}

func expandTemplate(tmpl string, vars map[string]string) (string, error) {
	out, unknown := hub.ExpandTemplate(tmpl, vars)
	if len(unknown) > 0 {
		for i, k := range unknown {
			unknown[i] = "${" + k + "}"
		}
		return "", fmt.Errorf("template %q uses unknown tokens %v", tmpl, unknown)
	}
	return out, nil
}
