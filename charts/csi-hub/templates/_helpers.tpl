{{- define "csi-hub.hubImage" -}}
{{ .Values.image.hub.repository }}:{{ .Values.image.hub.tag }}
{{- end -}}

{{- define "csi-hub.pluginImage" -}}
{{ .Values.image.plugin.repository }}:{{ .Values.image.plugin.tag }}
{{- end -}}

{{/* The host directory of the node socket the kubelet dials. */}}
{{- define "csi-hub.nodeSocketDir" -}}
{{- if .Values.driver.external -}}
{{ .Values.driver.externalSockets.nodeDir }}
{{- else -}}
{{ .Values.node.kubeletDir }}/plugins/{{ .Values.driver.name }}
{{- end -}}
{{- end -}}

{{/* "true" for the companion driver with one loop pool per node (manifests/node-local/):
nodeDeployment.enabled without driver.external; "" otherwise. */}}
{{- define "csi-hub.nodeLocal" -}}
{{- if and .Values.nodeDeployment.enabled (not .Values.driver.external) -}}true{{- end -}}
{{- end -}}

{{- define "csi-hub.socketName" -}}
{{- if .Values.driver.external -}}{{ .Values.driver.externalSockets.socketName }}{{- else -}}csi.sock{{- end -}}
{{- end -}}

{{- define "csi-hub.validate" -}}
{{- if not (has .Values.transport (list "loop" "nvme")) -}}
{{- fail (printf "transport must be loop or nvme, not %q" .Values.transport) -}}
{{- end -}}
{{- if and .Values.driver.external (not .Values.driver.externalSockets.controllerDir) -}}
{{- fail "driver.external=true needs driver.externalSockets.controllerDir: the host directory of the driver's controller socket" -}}
{{- end -}}
{{- if and (include "csi-hub.nodeLocal" .) (ne .Values.transport "loop") -}}
{{- fail "nodeDeployment.enabled=true with the companion driver needs transport=loop: one loop pool per node (the nvme storage host is central)" -}}
{{- end -}}
{{- if and .Values.nodeDeployment.enabled .Values.driver.external -}}
{{- $ctrls := splitList "," (.Values.controller.controllers | nospace) -}}
{{- if or (not .Values.controller.controllers) (has "provisioner" $ctrls) (has "snapshotter" $ctrls) -}}
{{- fail "nodeDeployment.enabled=true needs controller.controllers without provisioner and snapshotter (e.g. attacher,resizer): each node's csi-hub runs those" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.driver.external (empty .Values.driver.controllerAffinity) -}}
{{- fail "driver.external=true needs driver.controllerAffinity: the labels of the driver's controller pods, so csi-hub runs on their node" -}}
{{- end -}}
{{- end -}}
