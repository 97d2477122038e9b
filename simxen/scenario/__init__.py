"""simxen.scenario"""
