import { comments, GENERATED_HEADER, renderClusterConf, renderPermissionsConf, renderServerConf } from "./render.ts"

/** Where the checked-in generated configs live, relative to the repository root. */
export const INFRA_NATS_DIR = "infra/nats"

/** Example ports of the checked-in configs (`vigil up` and the tests pick free ports instead). */
export const EXAMPLE_PORT = 4290
export const EXAMPLE_CLUSTER = [
  { serverName: "vigil-1", port: 4291, clusterPort: 6291, storeDir: ".vigil/cluster/node-1/jetstream" },
  { serverName: "vigil-2", port: 4292, clusterPort: 6292, storeDir: ".vigil/cluster/node-2/jetstream" },
  { serverName: "vigil-3", port: 4293, clusterPort: 6293, storeDir: ".vigil/cluster/node-3/jetstream" },
] as const

export interface GeneratedFile {
  /** Relative to INFRA_NATS_DIR. */
  readonly path: string
  readonly content: string
}

const VIGIL_CONF_HEADER = [
  ...GENERATED_HEADER,
  "",
  "Example single-node Vigil bus: `nats-server -c infra/nats/vigil.conf` (from the repository root).",
  "",
  "It includes two files, resolved against this file's directory (nats-server 2.9 has no absolute includes):",
  "- permissions.conf: one <ROLE>_PERMS variable per NATS user, generated from the event catalog;",
  "- users.conf: per-install, NOT checked in: one <ROLE>_NKEY variable per user holding its nkey public key.",
  "  `vigil up` writes users with fresh nkeys into its own data dir (seeds kept there, mode 0600) together with",
  "  a config like this one on a free loopback port; to try this file by hand, write users.conf here with",
  "  `node libs/natsconf/src/cli.ts users infra/nats` (the seeds go to infra/nats/nkeys.json).",
  "",
  "The users file only supplies public keys: which user may do what is fixed by this file and permissions.conf.",
  "Listens on loopback only. store_dir is relative to the directory nats-server is started in.",
]

const clusterHeader = (n: number): ReadonlyArray<string> => [
  ...GENERATED_HEADER,
  "",
  `Node ${n} of an example 3-node local JetStream cluster (R3 streams), for fleet work: start all three with`,
  "`nats-server -c infra/nats/cluster/node-N.conf` from the repository root. Includes ../permissions.conf and",
  "the per-install ../users.conf (see vigil.conf). Routes are plain loopback routes without route auth.",
]

/** The generated files of infra/nats/, in a stable order. */
export const infraFiles = (): ReadonlyArray<GeneratedFile> => {
  const users = { include: "users.conf" }
  const files: Array<GeneratedFile> = [
    { path: "permissions.conf", content: renderPermissionsConf() },
    {
      path: "vigil.conf",
      content: renderServerConf({
        header: VIGIL_CONF_HEADER,
        serverName: "vigil",
        port: EXAMPLE_PORT,
        storeDir: ".vigil/nats/jetstream",
        users,
        permissions: { include: "permissions.conf" },
      }),
    },
  ]
  const nodes = renderClusterConf({
    nodes: EXAMPLE_CLUSTER,
    users: { include: "../users.conf" },
    permissions: { include: "../permissions.conf" },
  })
  nodes.forEach((node, i) => {
    const header = clusterHeader(i + 1)
    files.push({ path: `cluster/node-${i + 1}.conf`, content: `${comments(header)}\n\n${node.conf}` })
  })
  return files
}
