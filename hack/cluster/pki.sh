# PKI and kubeconfigs of the local cluster (openssl). Source, do not execute.

# sign_cert <name> <subject> [subjectAltName]: <name>.{key,crt} signed by the cluster CA.
sign_cert() {
	local name="$1" subj="$2" san="${3:-}" dir="${CLUSTER_DIR}/pki"
	openssl genrsa -out "${dir}/${name}.key" 2048 2>/dev/null
	openssl req -new -key "${dir}/${name}.key" -subj "${subj}" -out "${dir}/${name}.csr" 2>/dev/null
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=serverAuth,clientAuth"
		[[ -z "${san}" ]] || echo "subjectAltName=${san}"
	} >"${dir}/${name}.ext"
	openssl x509 -req -in "${dir}/${name}.csr" -CA "${dir}/ca.crt" -CAkey "${dir}/ca.key" -CAcreateserial \
		-days 30 -extfile "${dir}/${name}.ext" -out "${dir}/${name}.crt" 2>/dev/null
	rm -f "${dir}/${name}.csr" "${dir}/${name}.ext"
}

# write_kubeconfig <file> <cert name> <server>
write_kubeconfig() {
	local file="$1" cert="$2" server="$3" dir="${CLUSTER_DIR}/pki"
	cat >"${file}" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: csi-hub-local
  cluster:
    server: ${server}
    certificate-authority: ${dir}/ca.crt
users:
- name: ${cert}
  user:
    client-certificate: ${dir}/${cert}.crt
    client-key: ${dir}/${cert}.key
contexts:
- name: csi-hub-local
  context: {cluster: csi-hub-local, user: ${cert}}
current-context: csi-hub-local
KCFG
}

make_pki() {
	local ip="$1" dir="${CLUSTER_DIR}/pki"
	mkdir -p "${dir}"
	openssl genrsa -out "${dir}/ca.key" 2048 2>/dev/null
	openssl req -x509 -new -nodes -key "${dir}/ca.key" -subj "/CN=csi-hub-local-ca" -days 30 -out "${dir}/ca.crt" 2>/dev/null
	sign_cert apiserver "/CN=kube-apiserver" \
		"IP:127.0.0.1,IP:${ip},IP:${KUBERNETES_SVC_IP},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	# The admin identity is used by kubectl, the tests and the control-plane components.
	sign_cert admin "/O=system:masters/CN=csi-hub-admin"
	# The kubelet authenticates as its node, so the Node authorizer applies to it.
	sign_cert kubelet "/O=system:nodes/CN=system:node:${NODE_NAME}"
	openssl genrsa -out "${dir}/sa.key" 2048 2>/dev/null
	openssl rsa -in "${dir}/sa.key" -pubout -out "${dir}/sa.pub" 2>/dev/null
	write_kubeconfig "${KUBECONFIG_ADMIN}" admin "https://127.0.0.1:${APISERVER_PORT}"
	write_kubeconfig "${CLUSTER_DIR}/kubelet.kubeconfig" kubelet "https://127.0.0.1:${APISERVER_PORT}"
}
