#!/usr/bin/env python3
"""Build HRNetV2 + OCR (OCRNet) in PyTorch and export it to ONNX.

The network is written the way the official HRNet-Semantic-Segmentation code
(branch HRNet-OCR, ``lib/models/seg_hrnet_ocr.py``) writes it: same module tree,
same parameter names, same forward (including its ``view``/``permute`` calls and
the scale applied after the matmul), so that

* the official Cityscapes checkpoints load with ``--checkpoint`` (strict), and
* the exported ONNX graph has the shape ocrnet-edge's passes are written against.

``--head mmseg`` swaps in an OCR head written the way mmsegmentation writes
OCRHead / SpatialGatherModule / ObjectAttentionBlock (reshape instead of view,
``.contiguous()`` copies, a separate FCN aux head, each head doing its own
resize+concat of the backbone branches). It cannot load mmseg checkpoints; it
exists so the graph-rewriting passes see the second common spelling of OCR.

Without a checkpoint the weights are random (``--seed``); BatchNorm statistics
and affine parameters are randomised too (``--random-bn``, the default without a
checkpoint) so that BN folding has something non-trivial to fold, while keeping
activations O(1) so that reduced-precision builds stay meaningful.

Usage (full-size W48, 512x1024, legacy exporter, opset 13)::

    python3 models/export_hrnet_ocr.py --width 48 --exporter legacy --opset 13 \\
        --out /tmp/ocrnet-w48/model.onnx

Small fixture-sized model with dynamic batch/H/W::

    python3 models/export_hrnet_ocr.py --branch-width 8 --num-modules 1,1,1 \\
        --num-blocks 1 --layer1-blocks 1 --ocr-mid 32 --ocr-key 16 \\
        --height 64 --width-px 128 --dynamic --opset 17 --out /tmp/small.onnx

Load an official checkpoint (e.g. hrnet_ocr_cs_8162_torch11.pth)::

    python3 models/export_hrnet_ocr.py --width 48 --checkpoint hrnet_ocr_cs_8162_torch11.pth \\
        --align-corners --out /tmp/ocrnet-w48-cs.onnx

Note on align_corners: the official OCR Cityscapes config does not set
MODEL.ALIGN_CORNERS and so inherits True from lib/config/default.py (its README
says "we use align_corners = True for upsampling in HRNet"); only the plain HRNet
configs set False. The default here is False (the project's choice); pass
``--align-corners`` when exporting the official OCR checkpoints.

Input "input" (N,3,H,W float32, ImageNet-normalised RGB); outputs "aux" and
"out" (N,num_classes,H/4,W/4 logits, not upsampled), in that order.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BN_MOMENTUM = 0.1

# Set from the CLI before the model is built. The official code keeps the same
# flag as a module global (set from config.MODEL.ALIGN_CORNERS in the
# constructor); keeping it global keeps every interpolate call identical.
ALIGN_CORNERS = False

# Official widths per HRNetV2 variant: branch i has width * 2**i channels.
OFFICIAL_WIDTHS = (18, 32, 48)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------
# Official HRNet-OCR modules (names must match the checkpoints).
# --------------------------------------------------------------------------


def BatchNorm2d(num_features: int, **kwargs) -> nn.BatchNorm2d:
    # The official code uses SyncBatchNorm; its state-dict keys are the same as
    # BatchNorm2d's, and in eval mode both compute the same affine transform.
    return nn.BatchNorm2d(num_features, **kwargs)


def BNReLU(num_features: int) -> nn.Sequential:
    # ModuleHelper.BNReLU: a Sequential, so keys look like "f_pixel.1.0.weight".
    return nn.Sequential(BatchNorm2d(num_features), nn.ReLU())


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class SpatialGather_Module(nn.Module):
    """Object region representations: softmax(aux logits over H*W) @ feats."""

    def __init__(self, cls_num: int = 0, scale: int = 1):
        super().__init__()
        self.cls_num = cls_num
        self.scale = scale

    def forward(self, feats, probs):
        batch_size, c, h, w = probs.size(0), probs.size(1), probs.size(2), probs.size(3)
        probs = probs.view(batch_size, c, -1)
        feats = feats.view(batch_size, feats.size(1), -1)
        feats = feats.permute(0, 2, 1)  # batch x hw x c
        # Multiplying by scale (1) is kept: it is in the official graph.
        probs = F.softmax(self.scale * probs, dim=2)  # batch x k x hw
        ocr_context = torch.matmul(probs, feats).permute(0, 2, 1).unsqueeze(3)  # batch x c x k x 1
        return ocr_context


class _ObjectAttentionBlock(nn.Module):
    """Pixel-region attention: queries from pixels, keys/values from the K regions."""

    def __init__(self, in_channels: int, key_channels: int, scale: int = 1):
        super().__init__()
        self.scale = scale
        self.in_channels = in_channels
        self.key_channels = key_channels
        self.pool = nn.MaxPool2d(kernel_size=(scale, scale))
        self.f_pixel = nn.Sequential(
            nn.Conv2d(in_channels, key_channels, kernel_size=1, stride=1, padding=0, bias=False),
            BNReLU(key_channels),
            nn.Conv2d(key_channels, key_channels, kernel_size=1, stride=1, padding=0, bias=False),
            BNReLU(key_channels),
        )
        self.f_object = nn.Sequential(
            nn.Conv2d(in_channels, key_channels, kernel_size=1, stride=1, padding=0, bias=False),
            BNReLU(key_channels),
            nn.Conv2d(key_channels, key_channels, kernel_size=1, stride=1, padding=0, bias=False),
            BNReLU(key_channels),
        )
        self.f_down = nn.Sequential(
            nn.Conv2d(in_channels, key_channels, kernel_size=1, stride=1, padding=0, bias=False),
            BNReLU(key_channels),
        )
        self.f_up = nn.Sequential(
            nn.Conv2d(key_channels, in_channels, kernel_size=1, stride=1, padding=0, bias=False),
            BNReLU(in_channels),
        )

    def forward(self, x, proxy):
        batch_size, h, w = x.size(0), x.size(2), x.size(3)
        if self.scale > 1:
            x = self.pool(x)

        query = self.f_pixel(x).view(batch_size, self.key_channels, -1)
        query = query.permute(0, 2, 1)
        key = self.f_object(proxy).view(batch_size, self.key_channels, -1)
        value = self.f_down(proxy).view(batch_size, self.key_channels, -1)
        value = value.permute(0, 2, 1)

        sim_map = torch.matmul(query, key)
        sim_map = (self.key_channels ** -0.5) * sim_map
        sim_map = F.softmax(sim_map, dim=-1)

        context = torch.matmul(sim_map, value)
        context = context.permute(0, 2, 1).contiguous()
        context = context.view(batch_size, self.key_channels, *x.size()[2:])
        context = self.f_up(context)
        if self.scale > 1:
            context = F.interpolate(context, size=(h, w), mode="bilinear", align_corners=ALIGN_CORNERS)
        return context


class ObjectAttentionBlock2D(_ObjectAttentionBlock):
    pass


class SpatialOCR_Module(nn.Module):
    """Object context + pixel features -> augmented representation."""

    def __init__(self, in_channels: int, key_channels: int, out_channels: int,
                 scale: int = 1, dropout: float = 0.1):
        super().__init__()
        self.object_context_block = ObjectAttentionBlock2D(in_channels, key_channels, scale)
        self.conv_bn_dropout = nn.Sequential(
            nn.Conv2d(2 * in_channels, out_channels, kernel_size=1, padding=0, bias=False),
            BNReLU(out_channels),
            nn.Dropout2d(dropout),
        )

    def forward(self, feats, proxy_feats):
        context = self.object_context_block(feats, proxy_feats)
        return self.conv_bn_dropout(torch.cat([context, feats], 1))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = BatchNorm2d(planes * self.expansion, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        return self.relu(out + residual)


class HighResolutionModule(nn.Module):
    """Parallel branches followed by the all-to-all fuse (sum) of the official code."""

    def __init__(self, num_branches, block, num_blocks, num_inchannels, num_channels,
                 multi_scale_output=True):
        super().__init__()
        if not (num_branches == len(num_blocks) == len(num_channels) == len(num_inchannels)):
            raise ValueError("branch count mismatch in HighResolutionModule")
        self.num_inchannels = num_inchannels
        self.num_branches = num_branches
        self.multi_scale_output = multi_scale_output
        self.branches = self._make_branches(num_branches, block, num_blocks, num_channels)
        self.fuse_layers = self._make_fuse_layers()
        self.relu = nn.ReLU(inplace=True)

    def _make_one_branch(self, branch_index, block, num_blocks, num_channels, stride=1):
        downsample = None
        if stride != 1 or self.num_inchannels[branch_index] != num_channels[branch_index] * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.num_inchannels[branch_index], num_channels[branch_index] * block.expansion,
                          kernel_size=1, stride=stride, bias=False),
                BatchNorm2d(num_channels[branch_index] * block.expansion, momentum=BN_MOMENTUM),
            )
        layers = [block(self.num_inchannels[branch_index], num_channels[branch_index], stride, downsample)]
        self.num_inchannels[branch_index] = num_channels[branch_index] * block.expansion
        for _ in range(1, num_blocks[branch_index]):
            layers.append(block(self.num_inchannels[branch_index], num_channels[branch_index]))
        return nn.Sequential(*layers)

    def _make_branches(self, num_branches, block, num_blocks, num_channels):
        return nn.ModuleList(
            [self._make_one_branch(i, block, num_blocks, num_channels) for i in range(num_branches)])

    def _make_fuse_layers(self):
        if self.num_branches == 1:
            return None
        num_branches = self.num_branches
        num_inchannels = self.num_inchannels
        fuse_layers = []
        for i in range(num_branches if self.multi_scale_output else 1):
            fuse_layer = []
            for j in range(num_branches):
                if j > i:
                    # Lower resolution -> 1x1 conv + BN here, bilinear upsample in forward.
                    fuse_layer.append(nn.Sequential(
                        nn.Conv2d(num_inchannels[j], num_inchannels[i], 1, 1, 0, bias=False),
                        BatchNorm2d(num_inchannels[i], momentum=BN_MOMENTUM)))
                elif j == i:
                    fuse_layer.append(None)
                else:
                    # Higher resolution -> chain of stride-2 3x3 convs; ReLU on all but the last.
                    conv3x3s = []
                    for k in range(i - j):
                        if k == i - j - 1:
                            conv3x3s.append(nn.Sequential(
                                nn.Conv2d(num_inchannels[j], num_inchannels[i], 3, 2, 1, bias=False),
                                BatchNorm2d(num_inchannels[i], momentum=BN_MOMENTUM)))
                        else:
                            conv3x3s.append(nn.Sequential(
                                nn.Conv2d(num_inchannels[j], num_inchannels[j], 3, 2, 1, bias=False),
                                BatchNorm2d(num_inchannels[j], momentum=BN_MOMENTUM),
                                nn.ReLU(inplace=True)))
                    fuse_layer.append(nn.Sequential(*conv3x3s))
            fuse_layers.append(nn.ModuleList(fuse_layer))
        return nn.ModuleList(fuse_layers)

    def get_num_inchannels(self):
        return self.num_inchannels

    def forward(self, x):
        if self.num_branches == 1:
            return [self.branches[0](x[0])]
        for i in range(self.num_branches):
            x[i] = self.branches[i](x[i])
        x_fuse = []
        for i in range(len(self.fuse_layers)):
            y = x[0] if i == 0 else self.fuse_layers[i][0](x[0])
            for j in range(1, self.num_branches):
                if i == j:
                    y = y + x[j]
                elif j > i:
                    width_output = x[i].shape[-1]
                    height_output = x[i].shape[-2]
                    y = y + F.interpolate(self.fuse_layers[i][j](x[j]), size=[height_output, width_output],
                                          mode="bilinear", align_corners=ALIGN_CORNERS)
                else:
                    y = y + self.fuse_layers[i][j](x[j])
            x_fuse.append(self.relu(y))
        return x_fuse


blocks_dict = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def hrnet_config(branch_width: int, num_modules: Sequence[int], num_blocks: int,
                 layer1_blocks: int) -> dict:
    """The MODEL.EXTRA dict of the official yaml, parameterised for reduced fixtures."""
    widths = [branch_width * 2 ** i for i in range(4)]
    extra = {"STAGE1": {"NUM_MODULES": 1, "NUM_BRANCHES": 1, "BLOCK": "BOTTLENECK",
                        "NUM_BLOCKS": [layer1_blocks], "NUM_CHANNELS": [64]}}
    for s, n_mod in zip((2, 3, 4), num_modules):
        extra[f"STAGE{s}"] = {"NUM_MODULES": n_mod, "NUM_BRANCHES": s, "BLOCK": "BASIC",
                              "NUM_BLOCKS": [num_blocks] * s, "NUM_CHANNELS": widths[:s]}
    return extra


class HighResolutionNet(nn.Module):
    """HRNetV2 backbone + OCR head, as seg_hrnet_ocr.HighResolutionNet."""

    def __init__(self, extra: dict, num_classes: int = 19, ocr_mid_channels: int = 512,
                 ocr_key_channels: int = 256, head: str = "official"):
        super().__init__()
        self.head = head

        # stem net
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)

        self.stage1_cfg = extra["STAGE1"]
        num_channels = self.stage1_cfg["NUM_CHANNELS"][0]
        block = blocks_dict[self.stage1_cfg["BLOCK"]]
        num_blocks = self.stage1_cfg["NUM_BLOCKS"][0]
        self.layer1 = self._make_layer(block, 64, num_channels, num_blocks)
        stage1_out_channel = block.expansion * num_channels

        self.stage2_cfg = extra["STAGE2"]
        num_channels = self._expanded(self.stage2_cfg)
        self.transition1 = self._make_transition_layer([stage1_out_channel], num_channels)
        self.stage2, pre_stage_channels = self._make_stage(self.stage2_cfg, num_channels)

        self.stage3_cfg = extra["STAGE3"]
        num_channels = self._expanded(self.stage3_cfg)
        self.transition2 = self._make_transition_layer(pre_stage_channels, num_channels)
        self.stage3, pre_stage_channels = self._make_stage(self.stage3_cfg, num_channels)

        self.stage4_cfg = extra["STAGE4"]
        num_channels = self._expanded(self.stage4_cfg)
        self.transition3 = self._make_transition_layer(pre_stage_channels, num_channels)
        self.stage4, pre_stage_channels = self._make_stage(self.stage4_cfg, num_channels,
                                                           multi_scale_output=True)

        last_inp_channels = int(np.sum(pre_stage_channels))
        self.branch_channels = list(pre_stage_channels)

        if head == "official":
            # Note the official quirk: conv3x3_ocr and the first aux conv keep
            # their bias even though a BatchNorm follows.
            self.conv3x3_ocr = nn.Sequential(
                nn.Conv2d(last_inp_channels, ocr_mid_channels, kernel_size=3, stride=1, padding=1),
                BatchNorm2d(ocr_mid_channels),
                nn.ReLU(inplace=True),
            )
            self.ocr_gather_head = SpatialGather_Module(num_classes)
            self.ocr_distri_head = SpatialOCR_Module(in_channels=ocr_mid_channels,
                                                     key_channels=ocr_key_channels,
                                                     out_channels=ocr_mid_channels,
                                                     scale=1, dropout=0.05)
            self.cls_head = nn.Conv2d(ocr_mid_channels, num_classes, kernel_size=1, stride=1,
                                      padding=0, bias=True)
            self.aux_head = nn.Sequential(
                nn.Conv2d(last_inp_channels, last_inp_channels, kernel_size=1, stride=1, padding=0),
                BatchNorm2d(last_inp_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(last_inp_channels, num_classes, kernel_size=1, stride=1, padding=0, bias=True),
            )
        elif head == "mmseg":
            self.decode_head = nn.ModuleList([
                MMSegFCNHead(self.branch_channels, num_classes),
                MMSegOCRHead(self.branch_channels, ocr_mid_channels, ocr_key_channels, num_classes),
            ])
        else:
            raise ValueError(f"unknown head {head!r}")

    @staticmethod
    def _expanded(stage_cfg):
        block = blocks_dict[stage_cfg["BLOCK"]]
        return [c * block.expansion for c in stage_cfg["NUM_CHANNELS"]]

    def _make_transition_layer(self, num_channels_pre_layer, num_channels_cur_layer):
        num_branches_cur = len(num_channels_cur_layer)
        num_branches_pre = len(num_channels_pre_layer)
        transition_layers = []
        for i in range(num_branches_cur):
            if i < num_branches_pre:
                if num_channels_cur_layer[i] != num_channels_pre_layer[i]:
                    transition_layers.append(nn.Sequential(
                        nn.Conv2d(num_channels_pre_layer[i], num_channels_cur_layer[i], 3, 1, 1, bias=False),
                        BatchNorm2d(num_channels_cur_layer[i], momentum=BN_MOMENTUM),
                        nn.ReLU(inplace=True)))
                else:
                    transition_layers.append(None)
            else:
                conv3x3s = []
                for j in range(i + 1 - num_branches_pre):
                    inchannels = num_channels_pre_layer[-1]
                    outchannels = num_channels_cur_layer[i] if j == i - num_branches_pre else inchannels
                    conv3x3s.append(nn.Sequential(
                        nn.Conv2d(inchannels, outchannels, 3, 2, 1, bias=False),
                        BatchNorm2d(outchannels, momentum=BN_MOMENTUM),
                        nn.ReLU(inplace=True)))
                transition_layers.append(nn.Sequential(*conv3x3s))
        return nn.ModuleList(transition_layers)

    def _make_layer(self, block, inplanes, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM),
            )
        layers = [block(inplanes, planes, stride, downsample)]
        inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(inplanes, planes))
        return nn.Sequential(*layers)

    def _make_stage(self, layer_config, num_inchannels, multi_scale_output=True):
        num_modules = layer_config["NUM_MODULES"]
        modules = []
        for i in range(num_modules):
            reset_multi_scale_output = multi_scale_output or i != num_modules - 1
            modules.append(HighResolutionModule(layer_config["NUM_BRANCHES"],
                                                blocks_dict[layer_config["BLOCK"]],
                                                layer_config["NUM_BLOCKS"],
                                                num_inchannels,
                                                layer_config["NUM_CHANNELS"],
                                                reset_multi_scale_output))
            num_inchannels = modules[-1].get_num_inchannels()
        return nn.Sequential(*modules), num_inchannels

    def _transition(self, transition, cfg_prev, cfg_cur, y_list):
        x_list = []
        for i in range(cfg_cur["NUM_BRANCHES"]):
            if transition[i] is not None:
                src = y_list[i] if i < cfg_prev["NUM_BRANCHES"] else y_list[-1]
                x_list.append(transition[i](src))
            else:
                x_list.append(y_list[i])
        return x_list

    def backbone(self, x):
        """Stem, layer1 and stages 2-4; returns the four branch outputs."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)

        x_list = [self.transition1[i](x) if self.transition1[i] is not None else x
                  for i in range(self.stage2_cfg["NUM_BRANCHES"])]
        y_list = self.stage2(x_list)
        y_list = self.stage3(self._transition(self.transition2, self.stage2_cfg, self.stage3_cfg, y_list))
        return self.stage4(self._transition(self.transition3, self.stage3_cfg, self.stage4_cfg, y_list))

    def forward(self, x):
        x = self.backbone(x)
        if self.head == "mmseg":
            out_aux = self.decode_head[0](x)
            out = self.decode_head[1](x, out_aux)
            return [out_aux, out]

        # Upsampling
        x0_h, x0_w = x[0].size(2), x[0].size(3)
        x1 = F.interpolate(x[1], size=(x0_h, x0_w), mode="bilinear", align_corners=ALIGN_CORNERS)
        x2 = F.interpolate(x[2], size=(x0_h, x0_w), mode="bilinear", align_corners=ALIGN_CORNERS)
        x3 = F.interpolate(x[3], size=(x0_h, x0_w), mode="bilinear", align_corners=ALIGN_CORNERS)
        feats = torch.cat([x[0], x1, x2, x3], 1)

        out_aux = self.aux_head(feats)
        feats = self.conv3x3_ocr(feats)
        context = self.ocr_gather_head(feats, out_aux)
        feats = self.ocr_distri_head(feats, context)
        out = self.cls_head(feats)
        # Logits at 1/4 resolution; upsampling to the label size is the caller's job.
        return [out_aux, out]


# --------------------------------------------------------------------------
# mmsegmentation-style OCR head (graph variant; not checkpoint-compatible).
# --------------------------------------------------------------------------


class ConvModule(nn.Module):
    """mmcv ConvModule with norm: conv (no bias) -> BN -> ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn = BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.activate(self.bn(self.conv(x)))


def resize_concat(inputs):
    # mmseg BaseDecodeHead._transform_inputs('resize_concat'): every branch,
    # including branch 0, goes through interpolate, and every head does this
    # on its own, so the exported graph carries two copies of it.
    upsampled = [F.interpolate(x, size=inputs[0].shape[2:], mode="bilinear",
                               align_corners=ALIGN_CORNERS) for x in inputs]
    return torch.cat(upsampled, dim=1)


class MMSegFCNHead(nn.Module):
    """FCNHead(num_convs=1, kernel_size=1, concat_input=False) as the aux head of ocrnet_hr*."""

    def __init__(self, in_channels: Sequence[int], num_classes: int):
        super().__init__()
        channels = sum(in_channels)
        self.convs = nn.Sequential(ConvModule(channels, channels, 1))
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, inputs):
        return self.conv_seg(self.convs(resize_concat(inputs)))


class MMSegSpatialGatherModule(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, feats, probs):
        batch_size, num_classes, height, width = probs.size()
        channels = feats.size(1)
        probs = probs.view(batch_size, num_classes, -1)
        feats = feats.view(batch_size, channels, -1)
        feats = feats.permute(0, 2, 1)
        probs = F.softmax(self.scale * probs, dim=2)
        ocr_context = torch.matmul(probs, feats)
        return ocr_context.permute(0, 2, 1).contiguous().unsqueeze(3)


class MMSegObjectAttentionBlock(nn.Module):
    """SelfAttentionBlock(key_query_num_convs=2, matmul_norm, with_out) + bottleneck."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.channels = channels
        self.key_project = nn.Sequential(ConvModule(in_channels, channels, 1), ConvModule(channels, channels, 1))
        self.query_project = nn.Sequential(ConvModule(in_channels, channels, 1), ConvModule(channels, channels, 1))
        self.value_project = ConvModule(in_channels, channels, 1)
        self.out_project = ConvModule(channels, in_channels, 1)
        self.bottleneck = ConvModule(in_channels * 2, in_channels, 1)

    def attention(self, query_feats, key_feats):
        batch_size = query_feats.size(0)
        query = self.query_project(query_feats)
        query = query.reshape(*query.shape[:2], -1)
        query = query.permute(0, 2, 1).contiguous()

        key = self.key_project(key_feats)
        value = self.value_project(key_feats)
        key = key.reshape(*key.shape[:2], -1)
        value = value.reshape(*value.shape[:2], -1)
        value = value.permute(0, 2, 1).contiguous()

        sim_map = torch.matmul(query, key)
        sim_map = (self.channels ** -0.5) * sim_map
        sim_map = F.softmax(sim_map, dim=-1)

        context = torch.matmul(sim_map, value)
        context = context.permute(0, 2, 1).contiguous()
        context = context.reshape(batch_size, -1, *query_feats.shape[2:])
        return self.out_project(context)

    def forward(self, query_feats, key_feats):
        context = self.attention(query_feats, key_feats)
        return self.bottleneck(torch.cat([context, query_feats], dim=1))


class MMSegOCRHead(nn.Module):
    def __init__(self, in_channels: Sequence[int], ocr_mid: int, ocr_key: int, num_classes: int):
        super().__init__()
        self.bottleneck = ConvModule(sum(in_channels), ocr_mid, 3, padding=1)
        self.spatial_gather_module = MMSegSpatialGatherModule(1)
        self.object_context_block = MMSegObjectAttentionBlock(ocr_mid, ocr_key)
        self.conv_seg = nn.Conv2d(ocr_mid, num_classes, kernel_size=1)

    def forward(self, inputs, prev_output):
        feats = self.bottleneck(resize_concat(inputs))
        context = self.spatial_gather_module(feats, prev_output)
        object_context = self.object_context_block(feats, context)
        return self.conv_seg(object_context)


# --------------------------------------------------------------------------
# Weights: random (seeded), randomised BN, or an official checkpoint.
# --------------------------------------------------------------------------


def image_like_input(shape: Sequence[int], seed: int) -> torch.Tensor:
    """A deterministic, ImageNet-normalised, image-like NCHW float32 tensor.

    Smooth colour blobs plus a little pixel noise in [0, 1], normalised with the
    ImageNet mean/std like a real photo (values about -2.1..2.6), so the network
    sees image-like spatial statistics rather than white noise.
    """
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, c, max(h // 16, 2), max(w // 16, 2)), dtype=np.float32))
    smooth = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    noise = torch.from_numpy(rng.random((n, c, h, w), dtype=np.float32))
    img = (0.85 * smooth + 0.15 * noise).clamp(0.0, 1.0)
    mean = torch.tensor(IMAGENET_MEAN[:c]).view(1, c, 1, 1)
    std = torch.tensor(IMAGENET_STD[:c]).view(1, c, 1, 1)
    return ((img - mean) / std).contiguous()


# Trained OCR models have confident soft object regions (aux logits spanning
# several units); random weights give nearly flat ones. With flat regions all K
# object contexts collapse onto the image mean, the BatchNorms after f_object /
# f_down measure a near-zero variance and blow activations up by 100x.
AUX_LOGIT_STD = 4.0


def _measure_bn_stats(model: nn.Module, bns: list, x: torch.Tensor) -> None:
    # One train-mode forward with cumulative averaging: running stats become
    # exactly this batch's statistics. Dropout stays off so it cannot skew them.
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout2d):
            m.eval()
    model(x)
    model.eval()
    for bn in bns:
        bn.momentum = BN_MOMENTUM
        bn.num_batches_tracked.zero_()


def aux_classifier(model: nn.Module) -> nn.Conv2d:
    """The last conv of the aux head (the soft object region logits)."""
    return model.aux_head[3] if model.head == "official" else model.decode_head[0].conv_seg


@torch.no_grad()
def randomise_bn(model: nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial, seeded statistics and affine parameters.

    Purely random running stats would make activations explode or vanish through
    ~100 layers, which makes fp16/int8 checks downstream meaningless. So gamma and
    beta are random, the running statistics are measured on an image-like batch
    and then jittered, and the aux logits are scaled to a trained model's spread
    (see AUX_LOGIT_STD). Everything is a function of the seed.
    """
    g = torch.Generator().manual_seed(seed + 1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.weight.uniform_(0.5, 1.5, generator=g)
        bn.bias.normal_(0.0, 0.2, generator=g)

    x = image_like_input((2, 3, 128, 256), seed + 2)
    _measure_bn_stats(model, bns, x)
    cls = aux_classifier(model)
    gain = AUX_LOGIT_STD / model(x)[0].std().item()
    cls.weight.mul_(gain)
    cls.bias.mul_(gain)
    # Everything after the gather depends on the aux logits: measure again.
    _measure_bn_stats(model, bns, x)

    for bn in bns:
        std = bn.running_var.sqrt()
        bn.running_mean.add_(0.1 * std * torch.randn(std.shape, generator=g))
        bn.running_var.mul_(torch.empty_like(std).uniform_(0.7, 1.4, generator=g))


def load_official_checkpoint(model: nn.Module, path: str) -> None:
    """Load an official HRNet-OCR checkpoint strictly, with a readable error."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    cleaned = {}
    for k, v in state.items():
        # The official checkpoints are FullModel state dicts: "model.*" is the
        # network and "loss.*" holds the training criterion's class weights.
        if k.startswith("loss."):
            continue
        cleaned[k[len("model."):] if k.startswith("model.") else k] = v
    own = model.state_dict()
    missing = sorted(k for k in own if k not in cleaned and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in cleaned if k not in own)
    mismatched = sorted(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                        for k, v in cleaned.items() if k in own and own[k].shape != v.shape)
    if missing or unexpected or mismatched:
        lines = [f"checkpoint {path} does not match the model built from the CLI options:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {k}" for k in items)
        raise SystemExit("\n".join(lines))
    model.load_state_dict(cleaned, strict=True)


# --------------------------------------------------------------------------
# CLI, build, export.
# --------------------------------------------------------------------------

LEGACY_OPSETS = range(11, 18)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, choices=OFFICIAL_WIDTHS, default=48,
                   help="HRNetV2 variant (branch widths W,2W,4W,8W); default 48")
    p.add_argument("--branch-width", type=int, default=None,
                   help="reduced size: branch widths N,2N,4N,8N (overrides --width)")
    p.add_argument("--num-modules", default="1,4,3", help="modules in stages 2,3,4 (default 1,4,3)")
    p.add_argument("--num-blocks", type=int, default=4, help="basic blocks per branch (default 4)")
    p.add_argument("--layer1-blocks", type=int, default=4, help="bottlenecks in layer1 (default 4)")
    p.add_argument("--ocr-mid", type=int, default=512, help="OCR mid channels (default 512)")
    p.add_argument("--ocr-key", type=int, default=256, help="OCR key channels (default 256)")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--head", choices=("official", "mmseg"), default="official")
    p.add_argument("--align-corners", action="store_true",
                   help="bilinear align_corners=True (what the official OCR Cityscapes config uses)")
    p.add_argument("--checkpoint", default=None, help="official .pth to load (strict)")
    p.add_argument("--exporter", choices=("legacy", "dynamo"), default="legacy")
    p.add_argument("--opset", type=int, default=None, help="legacy: 11-17 (default 13); dynamo: 18+ (default 18)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--batch", type=int, default=1, help="batch size of the example input (default 1)")
    p.add_argument("--height", type=int, default=512, help="input height in pixels (default 512)")
    p.add_argument("--width-px", type=int, default=1024, help="input width in pixels (default 1024)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="randomise BatchNorm (default: on unless --checkpoint)")
    p.add_argument("--verify", action="store_true",
                   help="run onnxruntime on the exported file and compare with PyTorch")
    p.add_argument("--out", required=True, help="output .onnx path")
    args = p.parse_args(argv)

    if args.opset is None:
        args.opset = 13 if args.exporter == "legacy" else 18
    if args.exporter == "legacy" and args.opset not in LEGACY_OPSETS:
        p.error("the legacy exporter is used with opsets 11-17")
    if args.exporter == "dynamo" and args.opset < 18:
        p.error("the dynamo exporter needs opset 18 or newer")
    try:
        args.num_modules = [int(v) for v in args.num_modules.split(",")]
    except ValueError:
        p.error("--num-modules takes three comma-separated integers, e.g. 1,4,3")
    if len(args.num_modules) != 3 or min(args.num_modules) < 1:
        p.error("--num-modules takes three positive integers, e.g. 1,4,3")
    if args.height % 32 or args.width_px % 32:
        # Four stride-2 levels below 1/4: other sizes work but round unevenly.
        print(f"warning: {args.height}x{args.width_px} is not a multiple of 32", file=sys.stderr)
    if args.checkpoint and args.head != "official":
        p.error("--checkpoint loads official checkpoints; it needs --head official")
    if args.checkpoint and args.random_bn:
        p.error("--random-bn would overwrite the checkpoint's BatchNorm")
    if args.random_bn is None:
        args.random_bn = args.checkpoint is None
    return args


def build_model(args: argparse.Namespace) -> HighResolutionNet:
    """Deterministic for a given args (seeded init, seeded BN)."""
    global ALIGN_CORNERS
    ALIGN_CORNERS = bool(args.align_corners)
    torch.manual_seed(args.seed)
    extra = hrnet_config(args.branch_width or args.width, args.num_modules, args.num_blocks,
                         args.layer1_blocks)
    model = HighResolutionNet(extra, num_classes=args.num_classes, ocr_mid_channels=args.ocr_mid,
                              ocr_key_channels=args.ocr_key, head=args.head)
    if args.checkpoint:
        load_official_checkpoint(model, args.checkpoint)
    elif args.random_bn:
        randomise_bn(model, args.seed)
    return model.eval()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Learnable parameters of the official HRNetV2-W48 + OCR, 19 classes (the paper
# and model zoo say 70.3 M); a drift means the module tree no longer matches.
OFFICIAL_W48_PARAMS = 70_372_678


def is_official_w48(args: argparse.Namespace) -> bool:
    return (args.branch_width is None and args.width == 48 and args.num_modules == [1, 4, 3]
            and args.num_blocks == 4 and args.layer1_blocks == 4 and args.ocr_mid == 512
            and args.ocr_key == 256 and args.num_classes == 19 and args.head == "official")


def export(model: nn.Module, example: torch.Tensor, args: argparse.Namespace) -> None:
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    if args.exporter == "legacy":
        dynamic_axes = None
        if args.dynamic:
            dynamic_axes = {"input": {0: "batch", 2: "height", 3: "width"},
                            "aux": {0: "batch", 2: "out_height", 3: "out_width"},
                            "out": {0: "batch", 2: "out_height", 3: "out_width"}}
        torch.onnx.export(model, (example,), args.out, dynamo=False, opset_version=args.opset,
                          input_names=["input"], output_names=["aux", "out"],
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
    else:
        dynamic_shapes = None
        if args.dynamic:
            dim = torch.export.Dim
            dynamic_shapes = {"x": {0: dim("batch", min=1, max=64), 2: dim("height", min=32, max=4096),
                                    3: dim("width", min=32, max=4096)}}
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=args.opset,
                                    input_names=["input"], output_names=["aux", "out"],
                                    dynamic_shapes=dynamic_shapes, optimize=True)
        # One self-contained file is easier to ship and to commit as a fixture;
        # protobuf caps a single file at 2 GiB, so only then split the weights.
        n_bytes = sum(p.numel() * p.element_size() for p in model.state_dict().values())
        split = n_bytes >= (2 << 30) - (64 << 20)
        program.save(args.out, external_data=split)
        if not split:
            strip_stack_traces(args.out)


def strip_stack_traces(path: str) -> None:
    """Drop the per-node Python stack traces the dynamo exporter records.

    They hold absolute paths and source line numbers of this checkout, so the
    same model exported from another directory (or after editing a comment
    here) would differ byte-wise. The module-path metadata ("namespace",
    "pkg.torch.onnx.name_scopes", ...) is kept: it is stable and useful.
    """
    import onnx
    m = onnx.load(path)
    for node in m.graph.node:
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.save(m, path)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-30))


def ort_run(path: str, x: np.ndarray) -> list:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # reproducible goldens: no thread-count-dependent reductions
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(["aux", "out"], {"input": x})


def run(argv: Sequence[str] | None = None):
    """CLI entry point; returns (model, args) so fixture generation can reuse the exact model."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    model = build_model(args)
    n = count_params(model)
    print(f"parameters: {n} ({n / 1e6:.2f} M)")
    if is_official_w48(args) and n != OFFICIAL_W48_PARAMS:
        raise SystemExit(f"official W48 config should have {OFFICIAL_W48_PARAMS} parameters, got {n}")

    example = image_like_input((args.batch, 3, args.height, args.width_px), args.seed)
    t1 = time.perf_counter()
    export(model, example, args)
    t2 = time.perf_counter()
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {size} bytes; build {t1 - t0:.1f} s, export {t2 - t1:.1f} s")

    if args.verify:
        with torch.no_grad():
            ref = [t.numpy() for t in model(example)]
        got = ort_run(args.out, example.numpy())
        errs = [rel_l2(g, r) for g, r in zip(got, ref)]
        print(f"onnxruntime vs PyTorch rel L2: aux {errs[0]:.2e}, out {errs[1]:.2e}")
        if max(errs) >= 1e-4:
            raise SystemExit("onnxruntime disagrees with PyTorch")
    return model, args


if __name__ == "__main__":
    run()
