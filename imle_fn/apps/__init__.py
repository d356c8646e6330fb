"""Programs built on the library: the ``imle-fn`` command line (`cli`), the reference example's demo
(`demo`), the Warcraft look-alike benchmark (`warcraft`), the discrete VAE benchmark on k-subset
latents (`dvae`) and their shared `timing`.

Import rule: apps may import anything; nothing in the library imports an app.
"""
