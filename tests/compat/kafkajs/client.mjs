// KafkaJS against an umbra broker, driven by tests/compat/test_compat_kafkajs.py.
//
//   node client.mjs MODE --bootstrap HOST:PORT --topic TOPIC [options]
//
// Each mode prints one JSON object to stdout and exits 0, or prints the error to stderr and exits 1.
// KafkaJS's own log goes to stderr (level from --log-level: nothing, error, warn, info, debug).
// Bytes travel as base64 strings; null stays null.
//
//   admin-create    create TOPIC (--partitions), create it again, list topics, fetch its metadata and offsets
//   produce         send the records in --records (JSON lines from the test), --chunk per send() call,
//                   every other chunk GZIP-compressed when --gzip, acks=-1; --idempotent for the idempotent producer.
//                   Prints each record's acknowledged [index, partition, offset].
//   consume-group   consumer A of --group starts alone; after --pause-at committed records it pauses, consumer B
//                   joins (a rebalance), A resumes once both hold an assignment. Both commit synchronously after
//                   every batch and a record is reported only once its offset is committed. Stops both at
//                   --stop-after records (at least), so what is reported is exactly what is committed.
//   consume-resume  one new consumer of --group reads from the committed offsets to the high watermarks.
//   admin-inspect   topic offsets, offsets for --timestamp, the group's committed offsets, describeGroups,
//                   listGroups, the topic's configs.
//   admin-delete    delete --group (if given) and TOPIC, then list topics and groups again.
//
// --ssl-ca FILE connects with TLS, trusting that CA; --ssl-cert FILE --ssl-key FILE adds a client certificate.
// --sasl-mechanism and --sasl-username: SASL (see below).

import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import kafkajs from 'kafkajs'

const { Kafka, AssignerProtocol, CompressionTypes, ConfigResourceTypes, Partitioners, logLevel: LogLevel } = kafkajs

const { positionals, values: options } = parseArgs({
  allowPositionals: true,
  options: {
    bootstrap: { type: 'string' },
    topic: { type: 'string' },
    group: { type: 'string' },
    partitions: { type: 'string', default: '3' },
    records: { type: 'string' },
    chunk: { type: 'string', default: '500' },
    gzip: { type: 'boolean', default: false },
    idempotent: { type: 'boolean', default: false },
    'pause-at': { type: 'string', default: '1000' },
    'stop-after': { type: 'string', default: '6000' },
    timestamp: { type: 'string' },
    'timeout-ms': { type: 'string', default: '60000' },
    'log-level': { type: 'string', default: 'warn' },
    'ssl-ca': { type: 'string' },
    'ssl-cert': { type: 'string' },
    'ssl-key': { type: 'string' },
    'sasl-mechanism': { type: 'string' },
    'sasl-username': { type: 'string' },
  },
})

const mode = positionals[0]
const logLevelByName = {
  nothing: LogLevel.NOTHING,
  error: LogLevel.ERROR,
  warn: LogLevel.WARN,
  info: LogLevel.INFO,
  debug: LogLevel.DEBUG,
}

// KafkaJS logs through console.* by default, part of it to stdout; stdout carries only the result here.
const stderrLogCreator = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`[kafkajs ${label} ${namespace}] ${message} ${JSON.stringify(extra)}\n`)
}

const ssl = options['ssl-ca'] === undefined ? undefined : {
  ca: [readFileSync(options['ssl-ca'])],
  ...(options['ssl-cert'] === undefined ? {} : { cert: readFileSync(options['ssl-cert']), key: readFileSync(options['ssl-key']) }),
}

// --sasl-mechanism plain|scram-sha-256|scram-sha-512 --sasl-username USER logs in with SASL; the password is
// read from $KAFKAJS_SASL_PASSWORD (never an argument).
const sasl = options['sasl-mechanism'] === undefined ? undefined : {
  mechanism: options['sasl-mechanism'],
  username: options['sasl-username'],
  password: process.env.KAFKAJS_SASL_PASSWORD,
}

const kafka = new Kafka({
  clientId: `umbra-compat-kafkajs-${mode}`,
  brokers: [required('bootstrap')],
  ssl,
  sasl,
  logLevel: logLevelByName[options['log-level']] ?? LogLevel.WARN,
  logCreator: stderrLogCreator,
  connectionTimeout: 5000,
  requestTimeout: 30000,
  retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
})

function required(name) {
  const value = options[name]
  if (value === undefined) throw new Error(`--${name} is required for ${mode}`)
  return value
}

const fromBase64 = text => (text === null ? null : Buffer.from(text, 'base64'))
const toBase64 = buffer => (buffer === null || buffer === undefined ? null : Buffer.from(buffer).toString('base64'))

// KafkaJS gives headers as an object; a name sent more than once becomes an array of its values, in order.
function headersToObject(pairs) {
  const headers = {}
  for (const [name, value] of pairs) {
    const bytes = fromBase64(value)
    if (!(name in headers)) headers[name] = bytes
    else if (Array.isArray(headers[name])) headers[name].push(bytes)
    else headers[name] = [headers[name], bytes]
  }
  return headers
}

function headersToPairs(headers) {
  const pairs = []
  for (const [name, value] of Object.entries(headers ?? {})) {
    for (const one of Array.isArray(value) ? value : [value]) pairs.push([name, toBase64(one)])
  }
  return pairs
}

function describeMessage(partition, message) {
  return {
    partition,
    offset: Number(message.offset),
    key: toBase64(message.key),
    value: toBase64(message.value),
    headers: headersToPairs(message.headers),
    timestamp: Number(message.timestamp),
    timestampType: message.batchContext?.timestampType ?? null,
  }
}

function waitFor(predicate, what, timeoutMs = Number(options['timeout-ms'])) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs
    const poll = () => {
      if (predicate()) return resolve()
      if (Date.now() > deadline) return reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
      setTimeout(poll, 20)
    }
    poll()
  })
}

async function withAdmin(action) {
  const admin = kafka.admin()
  await admin.connect()
  try {
    return await action(admin)
  } finally {
    await admin.disconnect()
  }
}

async function adminCreate() {
  const topic = required('topic')
  return withAdmin(async admin => {
    const numPartitions = Number(options.partitions)
    const created = await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true })
    // KafkaJS answers false, not an error, when the topic exists already (TOPIC_ALREADY_EXISTS).
    const createdAgain = await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true })
    const topics = await admin.listTopics()
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] })
    const offsets = await admin.fetchTopicOffsets(topic)
    const cluster = await admin.describeCluster()
    return { created, createdAgain, topics, metadata, offsets, cluster }
  })
}

async function produce() {
  const topic = required('topic')
  const records = readFileSync(required('records'), 'utf8')
    .split('\n')
    .filter(line => line.length > 0)
    .map(line => JSON.parse(line))
  const chunkSize = Number(options.chunk)
  const producer = kafka.producer({
    idempotent: options.idempotent,
    maxInFlightRequests: options.idempotent ? 1 : undefined,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner, // every record names its partition; this only silences a warning
  })
  await producer.connect()
  const acknowledged = []
  let gzipChunks = 0
  try {
    for (let start = 0, chunkIndex = 0; start < records.length; start += chunkSize, chunkIndex++) {
      const chunk = records.slice(start, start + chunkSize)
      const compression = options.gzip && chunkIndex % 2 === 1 ? CompressionTypes.GZIP : CompressionTypes.None
      if (compression === CompressionTypes.GZIP) gzipChunks++
      const metadata = await producer.send({
        topic,
        acks: -1,
        compression,
        messages: chunk.map(record => ({
          partition: record.partition,
          key: fromBase64(record.key),
          value: fromBase64(record.value),
          headers: headersToObject(record.headers),
          timestamp: String(record.timestamp),
        })),
      })
      // One batch per partition per send(): a record's offset is its partition's base offset plus its place.
      const baseOffset = new Map(metadata.map(entry => [entry.partition, Number(entry.baseOffset)]))
      const errors = metadata.filter(entry => entry.errorCode !== 0)
      if (errors.length > 0) throw new Error(`produce errors: ${JSON.stringify(errors)}`)
      const placed = new Map()
      for (const record of chunk) {
        const place = placed.get(record.partition) ?? 0
        placed.set(record.partition, place + 1)
        acknowledged.push([record.index, record.partition, baseOffset.get(record.partition) + place])
      }
    }
  } finally {
    await producer.disconnect()
  }
  return { acknowledged, chunks: Math.ceil(records.length / chunkSize), gzipChunks }
}

function makeGroupConsumer(name, groupId, onCommitted, isStopping) {
  const consumer = kafka.consumer({
    groupId,
    heartbeatInterval: 300,
    sessionTimeout: 10000,
    rebalanceTimeout: 20000,
    maxBytesPerPartition: 16384, // small batches, so records are still left when the group rebalances
    maxWaitTimeInMs: 100,
    retry: { retries: 10, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  const state = { name, consumer, joins: [], consumed: 0, commits: 0 }
  consumer.on(consumer.events.GROUP_JOIN, event => {
    const { memberId, leaderId, isLeader, memberAssignment } = event.payload
    state.joins.push({ memberId, leaderId, isLeader, memberAssignment })
  })
  state.run = () =>
    consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch, isRunning, isStale }) => {
        if (isStopping() || !isRunning() || isStale() || batch.messages.length === 0) return
        const records = batch.messages.map(message => describeMessage(batch.partition, message))
        const next = String(Number(batch.messages[batch.messages.length - 1].offset) + 1)
        // Synchronous commit before reporting: if it fails (say the group is rebalancing), the batch is
        // not reported, KafkaJS retries it, and whoever owns the partition then reads it again.
        await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next }])
        state.commits++
        state.consumed += records.length
        onCommitted(name, records)
      },
    })
  return state
}

function summariseMember(state) {
  return { name: state.name, consumed: state.consumed, commits: state.commits, joins: state.joins }
}

async function consumeGroup() {
  const topic = required('topic')
  const groupId = required('group')
  const pauseAt = Number(options['pause-at'])
  const stopAfter = Number(options['stop-after'])
  const consumed = []
  let stopping = false
  const onCommitted = (name, records) => {
    for (const record of records) consumed.push({ ...record, member: name })
    if (consumed.length >= stopAfter) stopping = true
  }
  const first = makeGroupConsumer('A', groupId, onCommitted, () => stopping)
  const second = makeGroupConsumer('B', groupId, onCommitted, () => stopping)
  await first.consumer.connect()
  await first.consumer.subscribe({ topics: [topic], fromBeginning: true })
  await first.run()
  await waitFor(() => consumed.length >= pauseAt, `consumer A to commit ${pauseAt} records`)
  first.consumer.pause([{ topic }])
  const joinsOfABeforeB = first.joins.length

  await second.consumer.connect()
  await second.consumer.subscribe({ topics: [topic], fromBeginning: true })
  await second.run()
  // KafkaJS's GROUP_JOIN event carries no generation id: A joining again after B arrived is the rebalance.
  await waitFor(
    () => second.joins.length > 0 && first.joins.length > joinsOfABeforeB,
    'consumer B to join and consumer A to rejoin'
  )
  first.consumer.resume([{ topic }])
  await waitFor(() => stopping, `${stopAfter} committed records`)
  const groupWhileRunning = await withAdmin(admin => describeGroup(admin, groupId))
  await Promise.all([first.consumer.disconnect(), second.consumer.disconnect()])
  return { consumed, members: [summariseMember(first), summariseMember(second)], groupWhileRunning }
}

async function consumeResume() {
  const topic = required('topic')
  const groupId = required('group')
  const [highWatermarks, committedBefore] = await withAdmin(async admin => [
    await admin.fetchTopicOffsets(topic),
    await admin.fetchOffsets({ groupId, topics: [topic] }),
  ])
  const end = new Map(highWatermarks.map(entry => [entry.partition, Number(entry.high)]))
  const position = new Map(committedBefore[0].partitions.map(entry => [entry.partition, Number(entry.offset)]))
  const consumed = []
  const caughtUp = () => [...end].every(([partition, high]) => (position.get(partition) ?? 0) >= high)
  const member = makeGroupConsumer(
    'C',
    groupId,
    (name, records) => {
      for (const record of records) {
        consumed.push({ ...record, member: name })
        position.set(record.partition, record.offset + 1)
      }
    },
    () => false
  )
  await member.consumer.connect()
  await member.consumer.subscribe({ topics: [topic], fromBeginning: true })
  await member.run()
  await waitFor(caughtUp, 'the resumed consumer to reach the high watermarks')
  await member.consumer.disconnect()
  return {
    consumed,
    highWatermarks,
    committedBefore: committedBefore[0].partitions,
    members: [summariseMember(member)],
  }
}

// DescribeGroups, with each member's assignment decoded from the consumer protocol's bytes.
async function describeGroup(admin, groupId) {
  const { groups } = await admin.describeGroups([groupId])
  return groups.map(({ members, ...group }) => ({
    ...group,
    members: members.map(({ memberId, clientId, memberAssignment }) => ({
      memberId,
      clientId,
      assignment: AssignerProtocol.MemberAssignment.decode(memberAssignment)?.assignment ?? null,
    })),
  }))
}

async function adminInspect() {
  const topic = required('topic')
  const groupId = required('group')
  return withAdmin(async admin => ({
    topicOffsets: await admin.fetchTopicOffsets(topic),
    offsetsByTimestamp: await admin.fetchTopicOffsetsByTimestamp(topic, Number(required('timestamp'))),
    groupOffsets: await admin.fetchOffsets({ groupId, topics: [topic] }),
    describeGroups: await describeGroup(admin, groupId),
    listGroups: await admin.listGroups(),
    topicConfigs: await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
      includeSynonyms: false,
    }),
  }))
}

async function adminDelete() {
  const topic = required('topic')
  const groupId = options.group
  return withAdmin(async admin => {
    if (groupId !== undefined) await admin.deleteGroups([groupId])
    await admin.deleteTopics({ topics: [topic] })
    return { topicsAfter: await admin.listTopics(), groupsAfter: await admin.listGroups() }
  })
}

const modes = {
  'admin-create': adminCreate,
  produce,
  'consume-group': consumeGroup,
  'consume-resume': consumeResume,
  'admin-inspect': adminInspect,
  'admin-delete': adminDelete,
}

// Exit only once the write has been flushed: stdout to a pipe is asynchronous, and process.exit() would cut it short.
try {
  if (!(mode in modes)) throw new Error(`unknown mode ${mode}; one of ${Object.keys(modes).join(', ')}`)
  const result = await modes[mode]()
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0))
} catch (error) {
  process.stderr.write(`kafkajs client ${mode} failed: ${error?.stack ?? error}\n`, () => process.exit(1))
}
