"""advsign models in PyTorch: loads a model folder (TensorFlow.js layers format: model.json and
its weight files) as a torch nn.Module of the same architecture, for reference checks.

The module takes NCHW float32 images in [0, 1] (what PyTorch attack code expects) and returns
what the advsign model returns (logits; probabilities if the model ends in softmax). Keras works
in NHWC, so kernels are transposed and the activations are put back in NHWC order before a
Flatten, which keeps the dense layers' weights exactly as stored.

Supported layers: Rescaling, Conv2D (stride 1, odd kernels, 'same' or 'valid'), BatchNormalization,
ReLU, Activation (relu, linear, softmax), MaxPooling2D ('valid'), Flatten, Dropout, Dense, Softmax.
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn


class Rescale(nn.Module):
    def __init__(self, scale, offset):
        super().__init__()
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x):
        return x * self.scale + self.offset


class FlattenNHWC(nn.Module):
    """Keras' Flatten on NHWC activations: the dense weights expect (h, w, c) order."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1) if x.dim() == 4 else x.reshape(x.shape[0], -1)


def _activation(name):
    if name in (None, 'linear'):
        return None
    if name == 'relu':
        return nn.ReLU()
    if name == 'softmax':
        return nn.Softmax(dim=1)
    raise ValueError('unsupported activation %r' % name)


def _read_weights(model_dir, manifest):
    tensors = {}
    for group in manifest:
        data = b''.join(open(os.path.join(model_dir, p), 'rb').read() for p in group['paths'])
        offset = 0
        for w in group['weights']:
            if w.get('dtype', 'float32') != 'float32':
                raise ValueError('weight %s is %s: only float32 is supported' % (w['name'], w['dtype']))
            count = int(np.prod(w['shape'])) if w['shape'] else 1
            arr = np.frombuffer(data, dtype='<f4', count=count, offset=offset).reshape(w['shape'])
            tensors[w['name']] = torch.from_numpy(arr.copy())
            offset += 4 * count
    return tensors


def _layers(topology):
    cfg = topology.get('config') or topology['model_config']['config']
    return cfg['layers'] if isinstance(cfg, dict) else cfg


def _weight(weights, layer, suffix):
    for key in ('%s/%s' % (layer, suffix), '%s/%s:0' % (layer, suffix)):
        if key in weights:
            return weights[key]
    raise KeyError('weight %s/%s missing from the weight files' % (layer, suffix))


def _with_weights(module, kernel, name, c, weights):
    """A conv/dense module with its kernel, bias and activation, as a list of modules."""
    module.weight.data = kernel.contiguous()
    if c.get('use_bias', True):
        module.bias.data = _weight(weights, name, 'bias')
    act = _activation(c.get('activation'))
    return [module] + ([act] if act is not None else [])


def _modules(kind, c, weights, spatial):
    """The torch modules for one Keras layer (an empty list for layers that vanish at inference)."""
    name = c.get('name')
    if kind == 'Rescaling':
        return [Rescale(c['scale'], c['offset'])]
    if kind == 'Conv2D':
        kh, kw = c['kernel_size']
        if list(c.get('strides', [1, 1])) != [1, 1] or kh % 2 == 0 or kw % 2 == 0:
            raise ValueError('%s: only stride 1 and odd kernels are supported' % name)
        kernel = _weight(weights, name, 'kernel')
        conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], (kh, kw),
                         padding=(kh // 2, kw // 2) if c['padding'] == 'same' else 0, bias=c.get('use_bias', True))
        return _with_weights(conv, kernel.permute(3, 2, 0, 1), name, c, weights)
    if kind == 'Dense':
        kernel = _weight(weights, name, 'kernel')
        return _with_weights(nn.Linear(kernel.shape[0], kernel.shape[1], bias=c.get('use_bias', True)), kernel.t(), name, c, weights)
    if kind == 'BatchNormalization':
        gamma = _weight(weights, name, 'gamma')
        bn = (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(gamma.shape[0], eps=c.get('epsilon', 1e-3))
        bn.weight.data = gamma
        bn.bias.data = _weight(weights, name, 'beta')
        bn.running_mean.data = _weight(weights, name, 'moving_mean')
        bn.running_var.data = _weight(weights, name, 'moving_variance')
        return [bn]
    if kind == 'ReLU':
        return [nn.ReLU()]
    if kind in ('Activation', 'Softmax'):
        act = _activation(c.get('activation', 'softmax'))
        return [act] if act is not None else []
    if kind == 'MaxPooling2D':
        if c.get('padding', 'valid') != 'valid':
            raise ValueError('%s: only valid max pooling is supported' % name)
        return [nn.MaxPool2d(tuple(c['pool_size']), tuple(c.get('strides') or c['pool_size']))]
    if kind == 'Flatten':
        return [FlattenNHWC()]
    if kind == 'Dropout':
        return []
    raise ValueError('unsupported layer %s (%s)' % (kind, name))


def load_advsign_model(model_dir):
    """(module, info): the model in eval mode, and {'ends_in_softmax', 'input_size', 'num_classes'}."""
    path = model_dir if model_dir.endswith('.json') else os.path.join(model_dir, 'model.json')
    spec = json.load(open(path))
    weights = _read_weights(os.path.dirname(path), spec['weightsManifest'])
    mods, input_size, spatial = [], None, True
    for layer in _layers(spec['modelTopology']):
        kind, c = layer['class_name'], layer['config']
        if c.get('batch_input_shape'):
            input_size = c['batch_input_shape'][1]
        mods.extend(_modules(kind, c, weights, spatial))
        spatial = spatial and kind != 'Flatten'
    net = nn.Sequential(*mods).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    num_classes = [m for m in mods if isinstance(m, nn.Linear)][-1].out_features
    return net, {'ends_in_softmax': isinstance(mods[-1], nn.Softmax), 'input_size': input_size, 'num_classes': num_classes}


class Logits(nn.Module):
    """The logits advsign attacks: log-probabilities for a model that ends in softmax."""

    def __init__(self, net, ends_in_softmax):
        super().__init__()
        self.net, self.ends_in_softmax = net, ends_in_softmax

    def forward(self, x):
        out = self.net(x)
        return torch.log(out.clamp(1e-12, 1)) if self.ends_in_softmax else out


def load_logits_model(model_dir):
    net, info = load_advsign_model(model_dir)
    return Logits(net, info['ends_in_softmax']).eval(), info
