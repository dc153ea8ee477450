import Checkpoints
import Tensor

/// DreamSR's Context Cross-Attention (dreamsr-architecture item 4): the main network's GLOBAL-prompt text stream
/// queries the ControlNet's LOCAL text features. q = to_q(LN(txt)), k = to_k(LN(ctx)), v = to_v(LN(ctx)) with LN
/// without affine (eps 1e-6), per-head RMSNorm on q and k, softmax(q kᵀ/√d) v, no RoPE, no mask, then to_out.
public struct ContextCrossAttention: Sendable {
    public let toQ, toK, toV, toOut: Linear
    public let normQ, normK: Tensor
    public let heads: Int
    public let headDim: Int

    public init(toQ: Linear, toK: Linear, toV: Linear, toOut: Linear, normQ: Tensor, normK: Tensor, heads: Int, headDim: Int) {
        self.toQ = toQ
        self.toK = toK
        self.toV = toV
        self.toOut = toOut
        self.normQ = normQ
        self.normK = normK
        self.heads = heads
        self.headDim = headDim
    }

    /// Whether `to_out` is all zeros (a freshly initialised layer adds nothing).
    public var isZero: Bool {
        toOut.weight.materialize().maxAbs() == 0 && (toOut.bias?.maxAbs() ?? 0) == 0
    }

    /// `txt [B·T, D] += CCA(txt, ctx [B·T2, D])` for `batch` items.
    public func addInto(txt: Tensor, context ctx: Tensor, batch: Int) {
        let d = toQ.inFeatures, inner = heads * headDim
        let t = txt.count / d / batch, t2 = ctx.count / d / batch
        let lnT = TransformerOps.layerNormModulate(txt.reshaped([batch * t, d]))
        let lnC = TransformerOps.layerNormModulate(ctx.reshaped([batch * t2, d]))
        let q = toQ(lnT), k = toK(lnC), v = toV(lnC)
        q.withUnsafeMutablePointer { qp in
            normQ.withUnsafePointer { wq in
                TransformerOps.rmsNormHeads(qp, stride: inner, rows: batch * t, heads: heads, headDim: headDim, weight: wq)
            }
        }
        k.withUnsafeMutablePointer { kp in
            normK.withUnsafePointer { wk in
                TransformerOps.rmsNormHeads(kp, stride: inner, rows: batch * t2, heads: heads, headDim: headDim, weight: wk)
            }
        }
        let o = Tensor(zeros: [batch * t, inner])
        q.withUnsafePointer { qp in
            k.withUnsafePointer { kp in
                v.withUnsafePointer { vp in
                    o.withUnsafeMutablePointer { op in
                        for b in 0..<batch {
                            TransformerOps.attention(q: qp + b * t * inner, ldq: inner, k: kp + b * t2 * inner, ldk: inner,
                                                     v: vp + b * t2 * inner, ldv: inner, out: op + b * t * inner, ldo: inner,
                                                     queries: t, keys: t2, heads: heads, headDim: headDim)
                        }
                    }
                }
            }
        }
        toOut.accumulate(o, into: txt)
    }
}

/// The zero-initialised image MLP `fc2(SiLU(fc1(x)))` that adds ControlNet image features to the main image stream.
public struct ControlNetImageMLP: Sendable {
    public let fc1, fc2: Linear

    public init(fc1: Linear, fc2: Linear) {
        self.fc1 = fc1
        self.fc2 = fc2
    }

    /// `img [rows, D] += fc2(SiLU(fc1(features)))`.
    public func addInto(img: Tensor, features: Tensor) {
        let h = fc1(features)
        TransformerOps.silu(h)
        fc2.accumulate(h, into: img)
    }
}

extension Linear {
    /// `y += self(x)` for `x [m, in]`, `y [m, out]`: a float32 weight accumulates straight into y (sgemm, β = 1); a
    /// stored narrower weight runs in place into a temporary that is then added (no float32 copy of the weight).
    func accumulate(_ x: Tensor, into y: Tensor) {
        if case .resident(let w) = weight {
            TransformerOps.linear(x, weight: w, bias: bias, into: y, accumulate: true)
        } else {
            y.add(self(x))
        }
    }
}
