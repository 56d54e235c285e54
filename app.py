"""RS2-SAM2 demo: type a sentence, get the mask of the object it refers to in a remote sensing image.

Hugging Face Spaces entry point (``python app.py``). UI wiring only: what each event does lives in
:mod:`rs2sam2.app`, the pictures in :mod:`rs2sam2.visualize`.
"""

from __future__ import annotations

import functools

import gradio as gr

from rs2sam2 import app as logic

STAGES = [(f"stage {i + 1}", i) for i in range(4)]
DESCRIPTION = """# RS2-SAM2 · referring remote sensing image segmentation
Upload an aerial or satellite image and describe one object in it. The BEiT-3 union encoder reads image and
sentence together; its class token becomes a 14×14 **pseudo-mask prompt** (1), the sentence is fused into
every SAM2 Hiera block (2), and SAM2 decodes the **mask** (3). TIFFs may be 16-bit or multiband: choose the
bands to use as red, green, blue (counted from 1)."""

with gr.Blocks(title="RS2-SAM2", delete_cache=(3600, 3600)) as demo:
    gr.Markdown(DESCRIPTION)
    with gr.Row():
        with gr.Column(scale=2):
            image_file = gr.File(
                label="Image (PNG, JPEG, TIFF; 16-bit and multiband TIFF too)",
                file_types=["image", ".tif", ".tiff"],
                type="filepath",
                height=120,
                elem_id="image-file",
            )
            bands = gr.Textbox(
                value="",
                label="Bands as R,G,B, counted from 1 as in GDAL/QGIS (1-based, e.g. 3,2,1; one band: grey; "
                "empty: the image's colours)",
            )
            expression = gr.Textbox(
                label="Referring expression", placeholder="the large white building", elem_id="expression"
            )
            with gr.Row():
                model_choice = gr.Dropdown(
                    list(logic.MODEL_CHOICES), value=logic.BUNDLED_MODEL_ID, label="Model"
                )
                custom_model = gr.Textbox(
                    value="", label="Other model (Hub id or local folder; owner/name/subfolder)"
                )
            threshold = gr.Slider(
                0.05,
                0.95,
                value=logic.DEFAULT_THRESHOLD,
                step=0.05,
                label="Mask threshold",
                elem_id="threshold",
            )
            run = gr.Button("Segment", variant="primary", elem_id="segment")
        with gr.Column(scale=1):
            preview = gr.Image(
                label="Input as the model sees it", interactive=False, format="png", height=260
            )
            image_info = gr.Markdown()
    examples = logic.load_examples()
    if examples:  # a table with a thumbnail of each image (gr.Examples would show gr.File's file names)
        example_table = gr.Dataset(
            components=[gr.Image(visible=False), gr.Textbox(visible=False)],
            samples=examples,
            headers=["Image", "Referring expression"],
            type="index",
            layout="table",
            label="Examples (click one)",
            elem_id="examples",
        )
        example_table.click(
            functools.partial(logic.pick_example, examples),
            inputs=example_table,
            outputs=[image_file, expression],
            api_name="pick_example",
            api_visibility="private",
            concurrency_limit=None,
        )

    with gr.Row(equal_height=False):
        with gr.Column(elem_id="panel-prompt"):
            gr.Markdown("### 1 · Pseudo-mask prompt")
            pseudo_mask = gr.Image(label="14×14 pseudo-mask (MPG)", format="png", interactive=False)
            dense_prompt = gr.Image(label="Dense prompt fed to SAM2", format="png", interactive=False)
        with gr.Column(elem_id="panel-features"):
            gr.Markdown("### 2 · Text-fused Hiera features")
            stage = gr.Radio(STAGES, value=logic.DEFAULT_STAGE, label="Hiera stage")
            features = gr.Image(label="Fused features (PCA → RGB)", format="png", interactive=False)
            token = gr.Dropdown(
                [logic.MEAN_TOKEN], value=logic.MEAN_TOKEN, label="Text token", allow_custom_value=True
            )
            attention = gr.Image(
                label="Text → image attention (fusion layer)", format="png", interactive=False
            )
        with gr.Column(elem_id="panel-mask"):
            gr.Markdown("### 3 · SAM2 mask")
            mask = gr.Image(label="Mask", format="png", interactive=False)
            summary = gr.Markdown()
            mask_png = gr.File(label="Mask (PNG, native size)", interactive=False)
            result_json = gr.File(label="Result (JSON: RLE mask, box, area, score)", interactive=False)
    state = gr.State()

    gr.on(
        [run.click, expression.submit],
        logic.segment_event,
        inputs=[image_file, expression, model_choice, custom_model, bands, threshold, stage],
        outputs=[
            pseudo_mask,
            dense_prompt,
            features,
            attention,
            mask,
            summary,
            mask_png,
            result_json,
            token,
            state,
        ],
        api_name="segment",
        concurrency_limit=logic.CONCURRENCY_LIMIT,
    )
    gr.on(
        [image_file.change, bands.submit],
        logic.preview,
        inputs=[image_file, bands],
        outputs=[preview, image_info],
        api_name="preview",
        concurrency_limit=logic.PREVIEW_CONCURRENCY_LIMIT,
    )
    gr.on(
        [stage.change, token.change],
        logic.stage_event,
        inputs=[state, stage, token],
        outputs=[features, attention],
        api_name="render_stage",
        concurrency_limit=None,
    )

demo.queue(default_concurrency_limit=logic.CONCURRENCY_LIMIT, max_size=logic.QUEUE_MAX_SIZE)

if __name__ == "__main__":
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Serve the RS2-SAM2 demo (see docs/security.md).")
    parser.add_argument(
        "--mode",
        choices=("auto", "public", "local"),
        default=os.environ.get("RS2SAM2_APP_MODE") or "auto",
        help="public: only the listed models; local: any folder or Hub id; auto (default): public on "
        "Spaces or off loopback",
    )
    parser.add_argument("--server-name", default=os.environ.get("GRADIO_SERVER_NAME"), help="address")
    options = parser.parse_args()
    logic.configure_deployment(options.server_name, options.mode)
    demo.launch(server_name=options.server_name, **logic.LAUNCH_OPTIONS)
