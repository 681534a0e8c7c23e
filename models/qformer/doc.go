// Package qformer is BLIP-2's Querying Transformer (Li et al. 2023, arXiv
// 2301.12597 §3.1; LAVIS lavis/models/blip2_models/Qformer.py at 506965b):
// a BERT-base encoder (post-LN layers) whose input is [N learned queries ;
// text tokens]. Queries and text share each layer's self-attention; every
// CrossFreq-th layer (layer_num % 2 == 0: layers 0, 2, 4, …) adds a
// cross-attention from the query positions to the image features; query and
// text positions have separate feed-forward networks (intermediate_query /
// output_query vs intermediate / output). Word embeddings include the added
// [DEC] token; the LM head's decoder matrix is tied to them.
//
// Stage 2 keeps only the query path: New with TextSide false builds no word
// or position embeddings, no text feed-forwards and no heads (LAVIS
// blip2_opt.py deletes them), and a stage-1 checkpoint loads into it with
// nn.LoadOptions{Only: ["qformer.*"], Skip: TextSidePatterns}.
package qformer
