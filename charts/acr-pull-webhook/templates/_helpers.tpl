{{/*
Names. Object names are "<fullname>" or "<fullname>-<part>"; fullname is cut to leave room for the
longest part ("-certs-gen-create", 17 characters) within the 63-character label limit that Job and
CronJob names inherit through their pods' labels.
*/}}
{{- define "acr-pull-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "acr-pull-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "acr-pull-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object; component labels are added per object. */}}
{{- define "acr-pull-webhook.labels" -}}
helm.sh/chart: {{ include "acr-pull-webhook.chart" . }}
{{ include "acr-pull-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: acr-pull-webhook
{{- end }}

{{- define "acr-pull-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "acr-pull-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Names shared between templates: one definition each, so the objects that refer to each other cannot disagree. */}}
{{- define "acr-pull-webhook.webhookName" -}}{{ include "acr-pull-webhook.fullname" . }}{{- end }}
{{- define "acr-pull-webhook.configName" -}}{{ include "acr-pull-webhook.fullname" . }}-config{{- end }}
{{- define "acr-pull-webhook.tlsSecretName" -}}{{ include "acr-pull-webhook.fullname" . }}-tls{{- end }}
{{- define "acr-pull-webhook.credentialsSecretName" -}}{{ include "acr-pull-webhook.fullname" . }}-credentials{{- end }}
{{- define "acr-pull-webhook.certsGenName" -}}{{ include "acr-pull-webhook.fullname" . }}-certs-gen{{- end }}
{{- define "acr-pull-webhook.certsGenHookName" -}}{{ include "acr-pull-webhook.fullname" . }}-certs-gen-create{{- end }}
{{- define "acr-pull-webhook.syncName" -}}{{ include "acr-pull-webhook.fullname" . }}-sync-secrets{{- end }}
{{- define "acr-pull-webhook.certificateName" -}}{{ include "acr-pull-webhook.fullname" . }}-serving{{- end }}

{{/* The MutatingWebhookConfiguration is cluster-scoped; its name is the release's full name (as deploy/rbac
assumes). */}}
{{- define "acr-pull-webhook.mutatingWebhookConfigurationName" -}}{{ include "acr-pull-webhook.fullname" . }}{{- end }}

{{- define "acr-pull-webhook.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The image's entry points (see the Dockerfile: distroless Node 24, node at /nodejs/bin/node, the
build in /app). Spelled out in the chart rather than left to the image's ENTRYPOINT so one image
serves all three programs.
*/}}
{{- define "acr-pull-webhook.command.main" -}}
- /nodejs/bin/node
- /app/dist/src/cli/main.js
{{- end }}
{{- define "acr-pull-webhook.command.certsGen" -}}
- /nodejs/bin/node
- /app/dist/certs-gen/cli.js
{{- end }}

{{/*
Pod Security "restricted" plus a read-only root filesystem. Numeric ids so the kubelet can check
runAsNonRoot without reading the image (65532 is distroless "nonroot"). fsGroup makes the 0440
Secret files readable by the process and by nobody else.
*/}}
{{- define "acr-pull-webhook.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- define "acr-pull-webhook.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "acr-pull-webhook.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where sync-secrets finds entry i's credentials (a projected volume, see credentialsVolume). */}}
{{- define "acr-pull-webhook.credentialsDir" -}}/var/run/acr-pull-webhook/credentials{{- end }}

{{/* The workload identity token: the volume name, directory and file the azure-workload-identity webhook uses
(up to v1.5.1), so that webhook, where it runs, recognises them as its own (see values.yaml). */}}
{{- define "acr-pull-webhook.azureTokenVolume" -}}azure-identity-token{{- end }}
{{- define "acr-pull-webhook.azureTokenDir" -}}/var/run/secrets/azure/tokens{{- end }}
{{- define "acr-pull-webhook.azureTokenFile" -}}azure-identity-token{{- end }}

{{/* syncSecrets.trustedCA, mounted in a directory of its own, always as ca.crt. */}}
{{- define "acr-pull-webhook.trustedCADir" -}}/var/run/acr-pull-webhook/trusted-ca{{- end }}

{{/*
The configuration file (see the project README, "The configuration file"). `serve` reads
registries[].server/secretName; sync-secrets also reads credentials, optIn and prune.
*/}}
{{- define "acr-pull-webhook.configFile" -}}
{{- $root := . -}}
registries:
{{- range $index, $entry := .Values.registries }}
  - server: {{ $entry.server | quote }}
    secretName: {{ $entry.secretName | quote }}
    {{- if and $root.Values.syncSecrets.enabled $entry.credentials }}
    credentials:
      {{- $dir := include "acr-pull-webhook.credentialsDir" $root }}
      {{- with $entry.credentials.azure }}
      {{- $identity := $root.Values.syncSecrets.workloadIdentity }}
      azure:
        tenantId: {{ .tenantId | default $identity.tenantId | quote }}
        clientId: {{ .clientId | default $identity.clientId | quote }}
        {{- if .workloadIdentity }}
        federatedTokenFile: {{ printf "%s/%s"
          (include "acr-pull-webhook.azureTokenDir" $root) (include "acr-pull-webhook.azureTokenFile" $root) | quote }}
        {{- else }}
        clientSecretFile: {{ printf "%s/registry-%d/client-secret" $dir $index | quote }}
        {{- end }}
        {{- with .cloud }}
        cloud: {{ . | quote }}
        {{- end }}
        {{- with .authorityHost }}
        authorityHost: {{ . | quote }}
        {{- end }}
      {{- else }}
      usernameFile: {{ printf "%s/registry-%d/username" $dir $index | quote }}
      passwordFile: {{ printf "%s/registry-%d/password" $dir $index | quote }}
      {{- end }}
    {{- end }}
{{- end }}
{{- with .Values.acrHostSuffixes }}
acrHostSuffixes:
{{- range . }}
  - {{ . | quote }}
{{- end }}
{{- end }}
optIn:
  label: {{ .Values.optIn.label | quote }}
  value: {{ .Values.optIn.value | quote }}
prune: {{ .Values.syncSecrets.prune }}
{{- end }}

{{/*
Checks the schema cannot express (it sees one value at a time). Included by the templates whose
objects they protect; `fail` stops install, upgrade and template alike.
*/}}
{{- define "acr-pull-webhook.validate" -}}
{{- $grace := int .Values.webhook.terminationGracePeriodSeconds }}
{{- $drain := add .Values.webhook.drainDelaySeconds .Values.webhook.shutdownTimeoutSeconds | int }}
{{- if le $grace $drain }}
{{- fail (printf (cat
  "webhook.terminationGracePeriodSeconds (%d) must be greater than"
  "webhook.drainDelaySeconds + webhook.shutdownTimeoutSeconds (%d):"
  "the kubelet would kill pods that are still draining") $grace $drain) }}
{{- end }}
{{- if .Values.syncSecrets.enabled }}
{{- $identity := .Values.syncSecrets.workloadIdentity }}
{{- if and $identity.enabled (not (and $identity.clientId $identity.tenantId)) }}
{{- fail (cat
  "syncSecrets.workloadIdentity.enabled needs syncSecrets.workloadIdentity.clientId and tenantId"
  "(the identity whose federated credential names the sync-secrets ServiceAccount)") }}
{{- end }}
{{- range $index, $entry := .Values.registries }}
{{- if not $entry.credentials }}
{{- fail (printf (cat
  "registries[%d] (%s): credentials are required while syncSecrets.enabled is true"
  "(or set syncSecrets.enabled=false and create the pull secrets yourself)") $index $entry.server) }}
{{- end }}
{{- with $entry.credentials.azure }}
{{- if contains "*" $entry.server }}
{{- fail (printf (cat
  "registries[%d] (%s): credentials.azure needs one registry, not a '*' pattern:"
  "its tokens are issued for one registry name") $index $entry.server) }}
{{- end }}
{{- $suffix := regexReplaceAll "^[^/:]*\\.azurecr\\.(io|cn|us)(:[0-9]+)?(/.*)?$" $entry.server "${1}" }}
{{- $cloudOfServer := get (dict "io" "AzurePublicCloud" "cn" "AzureChinaCloud" "us" "AzureUSGovernment") $suffix }}
{{- if and (not .cloud) (not $cloudOfServer) }}
{{- fail (printf (cat
  "registries[%d] (%s): credentials.azure.cloud is required: the server is not named *.azurecr.io,"
  "*.azurecr.cn or *.azurecr.us, so its cloud cannot be told from the name") $index $entry.server) }}
{{- end }}
{{- if and .cloud $cloudOfServer (ne .cloud $cloudOfServer) }}
{{- fail (printf "registries[%d] (%s): credentials.azure.cloud %s does not match the server, an %s registry"
  $index $entry.server .cloud $cloudOfServer) }}
{{- end }}
{{- if and .workloadIdentity (not $identity.enabled) }}
{{- fail (printf (cat
  "registries[%d] (%s): credentials.azure.workloadIdentity needs syncSecrets.workloadIdentity.enabled"
  "(the projected ServiceAccount token it sends)") $index $entry.server) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The CEL regular expression (RE2, anchored at the start of the image string) that every image
some registries[] entry could match also matches. It may match more (the webhook decides exactly),
never less. Per entry, mirroring the kubelet's rules the webhook implements:
  - the host, label by label: '*' becomes [^./:]* (anything inside one label), other characters
    are literal, so the label count must be equal;
  - the port: ":<port>" when the entry has one, and none otherwise (a glob never crosses ':');
  - the path prefix as a plain string prefix of "/<repository>" ("/v1/", "/v2/" dropped), or "/";
Entries that could match Docker Hub (a host pattern that matches "docker.io", or index.docker.io)
also let through every image whose first component is not a host, and docker.io/, index.docker.io/.
*/}}
{{- define "acr-pull-webhook.imageRegex" -}}
{{- $alternatives := list -}}
{{- $dockerHub := false -}}
{{- range .Values.registries -}}
{{- $server := .server -}}
{{- $host := regexReplaceAll "^([^:/]*).*$" $server "${1}" -}}
{{- $port := "" -}}
{{- if regexMatch "^[^:/]*:" $server -}}
{{- $port = regexReplaceAll "^[^:/]*:([0-9]+).*$" $server "${1}" -}}
{{- end -}}
{{- $path := "" -}}
{{- if contains "/" $server -}}
{{- $path = regexReplaceAll "^/v[12]/" (regexReplaceAll "^[^/]*(/.*)$" $server "${1}") "/" -}}
{{- end -}}
{{- if eq $path "/" -}}{{- $path = "" -}}{{- end -}}
{{- $hostPattern := regexQuoteMeta $host | replace "\\*" "[^./:]*" -}}
{{- $portPattern := ternary "" (printf ":%s" $port) (eq $port "") -}}
{{- $pathPattern := ternary "/" (regexQuoteMeta $path) (eq $path "") -}}
{{- $alternatives = append $alternatives (printf "%s%s%s" $hostPattern $portPattern $pathPattern) -}}
{{- if and (eq $port "") (or (eq $host "index.docker.io") (regexMatch (printf "^%s$" $hostPattern) "docker.io")) -}}
{{- $dockerHub = true -}}
{{- end -}}
{{- end -}}
{{- if $dockerHub -}}
{{- $alternatives = concat $alternatives (list "[^/]*$" "[^/.:A-Z]+/" "docker\\.io/" "index\\.docker\\.io/") -}}
{{- end -}}
{{- printf "^(?:%s)" (join "|" (uniq $alternatives)) -}}
{{- end }}

{{/* The matchCondition expression: true when any container, init container or ephemeral container image
matches imageRegex. */}}
{{- define "acr-pull-webhook.imageMatchExpression" -}}
{{- $regex := include "acr-pull-webhook.imageRegex" . -}}
{{- $test := printf "has(c.image) && c.image.matches(r'%s')" $regex -}}
object.spec.containers.exists(c, {{ $test }}) ||
(has(object.spec.initContainers) && object.spec.initContainers.exists(c, {{ $test }})) ||
(has(object.spec.ephemeralContainers) && object.spec.ephemeralContainers.exists(c, {{ $test }}))
{{- end }}

{{/* A certs-gen container: .root is the chart context, .name the container name, .args the verb and flags. */}}
{{- define "acr-pull-webhook.certsGenContainer" -}}
- name: {{ .name }}
  image: {{ include "acr-pull-webhook.image" .root | quote }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command:
    {{- include "acr-pull-webhook.command.certsGen" .root | nindent 4 }}
  args:
    {{- toYaml .args | nindent 4 }}
  resources:
    {{- toYaml .root.Values.certsGen.resources | nindent 4 }}
  securityContext:
    {{- include "acr-pull-webhook.containerSecurityContext" .root | nindent 4 }}
{{- end }}

{{- define "acr-pull-webhook.certsGenCreateArgs" -}}
{{- /* --webhook-config: a serving certificate is only ever issued by a CA every caBundle already trusts
(read only when renewing under an existing CA). */ -}}
{{- list "create"
  (printf "--namespace=%s" .Release.Namespace)
  (printf "--secret-name=%s" (include "acr-pull-webhook.tlsSecretName" .))
  (printf "--service=%s" (include "acr-pull-webhook.webhookName" .))
  (printf "--validity=%d" (int .Values.certsGen.validityDays))
  (printf "--webhook-config=%s" (include "acr-pull-webhook.mutatingWebhookConfigurationName" .))
  | toYaml }}
{{- end }}
{{- define "acr-pull-webhook.certsGenPatchArgs" -}}
{{- list "patch"
  (printf "--webhook-config=%s" (include "acr-pull-webhook.mutatingWebhookConfigurationName" .))
  (printf "--secret-name=%s" (include "acr-pull-webhook.tlsSecretName" .))
  (printf "--namespace=%s" .Release.Namespace)
  | toYaml }}
{{- end }}

{{/* Pod spec fields shared by the certs-gen Jobs and CronJob; .root is the chart context, .serviceAccount the
account to run as. Scheduling comes from certsGen.*: short-lived pods, not bound to where the webhook runs. */}}
{{- define "acr-pull-webhook.certsGenPodSpec" -}}
serviceAccountName: {{ .serviceAccount }}
# certs-gen talks to the API: it needs its token (the ServiceAccount itself does not mount one by default).
automountServiceAccountToken: true
enableServiceLinks: false
restartPolicy: Never
{{- include "acr-pull-webhook.imagePullSecrets" .root }}
{{- with .root.Values.certsGen.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
securityContext:
  {{- include "acr-pull-webhook.podSecurityContext" .root | nindent 2 }}
{{- with .root.Values.certsGen.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.certsGen.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.certsGen.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The projected volume holding each registries[i] entry's username and password as registry-<i>/username
and registry-<i>/password, or an azure clientSecret entry's secret as registry-<i>/client-secret. Empty when no
entry has a file to mount (workload identity only). */}}
{{- define "acr-pull-webhook.credentialsVolume" -}}
{{- $root := . -}}
{{- $inline := list -}}
{{- $existing := list -}}
{{- $clientSecrets := list -}}
{{- range $index, $entry := .Values.registries -}}
{{- with $entry.credentials -}}
{{- if .existingSecret -}}
{{- $existing = append $existing (dict "index" $index "secret" .existingSecret) -}}
{{- else if .azure -}}
{{- with .azure.clientSecret -}}
{{- $clientSecrets = append $clientSecrets (dict "index" $index "secret" .existingSecret) -}}
{{- end -}}
{{- else -}}
{{- $inline = append $inline $index -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if or $inline $existing $clientSecrets -}}
- name: credentials
  projected:
    defaultMode: 0440
    sources:
      {{- if $inline }}
      - secret:
          name: {{ include "acr-pull-webhook.credentialsSecretName" $root }}
          items:
            {{- range $inline }}
            - key: registry-{{ . }}-username
              path: registry-{{ . }}/username
            - key: registry-{{ . }}-password
              path: registry-{{ . }}/password
            {{- end }}
      {{- end }}
      {{- range $existing }}
      - secret:
          name: {{ .secret.name }}
          items:
            - key: {{ .secret.usernameKey | default "username" }}
              path: registry-{{ .index }}/username
            - key: {{ .secret.passwordKey | default "password" }}
              path: registry-{{ .index }}/password
      {{- end }}
      {{- range $clientSecrets }}
      - secret:
          name: {{ .secret.name }}
          items:
            - key: {{ .secret.key | default "client-secret" }}
              path: registry-{{ .index }}/client-secret
      {{- end }}
{{- end }}
{{- end }}

{{/* The sync-secrets pod spec for both modes; .root is the chart context, .mode "once" or "watch". */}}
{{- define "acr-pull-webhook.syncPodSpec" -}}
{{- $values := .root.Values.syncSecrets -}}
{{- $credentials := include "acr-pull-webhook.credentialsVolume" .root -}}
serviceAccountName: {{ include "acr-pull-webhook.syncName" .root }}
# sync-secrets talks to the API: it needs its token (the ServiceAccount itself does not mount one by default).
automountServiceAccountToken: true
enableServiceLinks: false
{{- include "acr-pull-webhook.imagePullSecrets" .root }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with $values.hostAliases }}
hostAliases:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "acr-pull-webhook.podSecurityContext" .root | nindent 2 }}
containers:
  - name: sync-secrets
    image: {{ include "acr-pull-webhook.image" .root | quote }}
    imagePullPolicy: {{ .root.Values.image.pullPolicy }}
    command:
      {{- include "acr-pull-webhook.command.main" .root | nindent 6 }}
    args:
      - sync-secrets
      - --config=/etc/acr-pull-webhook/config.yaml
      {{- if eq .mode "watch" }}
      - --watch
      - --health-port={{ $values.watch.healthPort }}
      {{- with $values.tokenRefreshFraction }}
      {{- /* Decimal, never Go's exponent form (1e-05), which the flag refuses; a --set string as written. */}}
      - --token-refresh-fraction={{ kindIs "string" . | ternary . (regexReplaceAll "0+$" (printf "%f" .) "") }}
      {{- end }}
      {{- else }}
      - --once
      {{- end }}
      {{- with $values.kubeApi }}
      - --kube-api-qps={{ int .qps }}
      - --kube-api-burst={{ int .burst }}
      {{- end }}
      {{- with $values.concurrency }}
      - --concurrency={{ int . }}
      {{- end }}
      - --log-level={{ $values.logLevel }}
    {{- if or (eq .mode "watch") $values.trustedCA.configMap }}
    env:
      {{- if eq .mode "watch" }}
      # The Lease lives in the release namespace; each replica is named by its pod in it.
      - name: ACR_PULL_WEBHOOK_LEASE_NAMESPACE
        valueFrom:
          fieldRef:
            fieldPath: metadata.namespace
      - name: ACR_PULL_WEBHOOK_LEASE_IDENTITY
        valueFrom:
          fieldRef:
            fieldPath: metadata.name
      {{- end }}
      {{- if $values.trustedCA.configMap }}
      # Node adds these CAs to its built-in ones for every HTTPS request (read once, at start).
      - name: NODE_EXTRA_CA_CERTS
        value: {{ printf "%s/ca.crt" (include "acr-pull-webhook.trustedCADir" .root) | quote }}
      {{- end }}
    {{- end }}
    {{- if eq .mode "watch" }}
    # Plain-HTTP /healthz, /readyz and /metrics. There is no Service in front of these pods (nothing
    # calls them): Prometheus scrapes each pod, e.g. with a PodMonitor on port "health".
    ports:
      - name: health
        containerPort: {{ $values.watch.healthPort }}
        protocol: TCP
    # /healthz fails when the namespace watch has stopped making progress, so a stuck replica is
    # restarted rather than sitting silent.
    livenessProbe:
      httpGet:
        path: /healthz
        port: health
      periodSeconds: 10
      timeoutSeconds: 2
      failureThreshold: 3
    readinessProbe:
      httpGet:
        path: /readyz
        port: health
      periodSeconds: 5
      timeoutSeconds: 2
    startupProbe:
      httpGet:
        path: /healthz
        port: health
      periodSeconds: 2
      failureThreshold: 30
    {{- end }}
    resources:
      {{- toYaml $values.resources | nindent 6 }}
    securityContext:
      {{- include "acr-pull-webhook.containerSecurityContext" .root | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /etc/acr-pull-webhook
        readOnly: true
      {{- if $credentials }}
      - name: credentials
        mountPath: {{ include "acr-pull-webhook.credentialsDir" .root }}
        readOnly: true
      {{- end }}
      {{- if $values.workloadIdentity.enabled }}
      - name: {{ include "acr-pull-webhook.azureTokenVolume" .root }}
        mountPath: {{ include "acr-pull-webhook.azureTokenDir" .root }}
        readOnly: true
      {{- end }}
      {{- if $values.trustedCA.configMap }}
      - name: trusted-ca
        mountPath: {{ include "acr-pull-webhook.trustedCADir" .root }}
        readOnly: true
      {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "acr-pull-webhook.configName" .root }}
  {{- if $credentials }}
  # Mounted as a directory (no subPath) so rotated credentials reach the process, which re-reads them.
  {{- $credentials | nindent 2 }}
  {{- end }}
  {{- with $values.workloadIdentity }}
  {{- if .enabled }}
  # The ServiceAccount token sent to Entra ID as the client assertion; the kubelet rewrites the file before it
  # expires and sync-secrets reads it on every token request.
  - name: {{ include "acr-pull-webhook.azureTokenVolume" $.root }}
    projected:
      sources:
        - serviceAccountToken:
            audience: {{ .audience | quote }}
            expirationSeconds: {{ int .expirationSeconds }}
            path: {{ include "acr-pull-webhook.azureTokenFile" $.root }}
  {{- end }}
  {{- end }}
  {{- with $values.trustedCA }}
  {{- if .configMap }}
  - name: trusted-ca
    configMap:
      name: {{ .configMap | quote }}
      items:
        - key: {{ .key | quote }}
          path: ca.crt
  {{- end }}
  {{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The distinct registries[].secretName values, in configuration order, as a flow sequence of quoted strings. */}}
{{- define "acr-pull-webhook.secretNames" -}}
{{- $names := list -}}
{{- range .Values.registries }}{{ $names = append $names .secretName }}{{ end -}}
[{{ range $index, $name := $names | uniq }}{{ if $index }}, {{ end }}{{ $name | quote }}{{ end }}]
{{- end }}
